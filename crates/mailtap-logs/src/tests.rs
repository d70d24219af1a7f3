//! Tests of the public API: formats against Zeek baselines, escaping,
//! limits, events, files and routing.

use crate::*;
use mailtap_core::{
    ConnId, ConnRecord, Event, EventRecord, FieldDef, Interval, Record, SmtpRecord, Timestamp,
    Value, WeirdRecord, ZeekRecord,
};
use proptest::prelude::*;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ------------------------------------------------------------------ helpers

/// A record made of arbitrary values, for format tests.
struct Rec<'a> {
    fields: &'static [FieldDef],
    vals: Vec<Value<'a>>,
}

impl ZeekRecord for Rec<'_> {
    fn path(&self) -> &'static str {
        "test"
    }
    fn fields(&self) -> &'static [FieldDef] {
        self.fields
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        for v in &self.vals {
            out(*v);
        }
    }
}

const fn fd(name: &'static str, ty: &'static str) -> FieldDef {
    FieldDef { name, ty }
}

static ALL_FIELDS: [FieldDef; 12] = [
    fd("ts", "time"),
    fd("dur", "interval"),
    fd("s", "string"),
    fd("e", "enum"),
    fd("a", "addr"),
    fd("p", "port"),
    fd("c", "count"),
    fd("b", "bool"),
    fd("set", "set[string]"),
    fd("vec", "vector[string]"),
    fd("addrs", "vector[addr]"),
    fd("u", "string"),
];

static ONE_STR: [FieldDef; 1] = [fd("s", "string")];
static ONE_VEC: [FieldDef; 1] = [fd("v", "vector[string]")];

fn zeek(rec: &dyn ZeekRecord) -> String {
    zeek_l(rec, &LogLimits::default()).0
}

fn zeek_l(rec: &dyn ZeekRecord, l: &LogLimits) -> (String, Truncations) {
    let mut out = Vec::new();
    let t = format_zeek_row(rec, l, &mut out);
    (String::from_utf8(out).expect("utf8 output"), t)
}

fn json(rec: &dyn ZeekRecord) -> String {
    let mut out = Vec::new();
    format_json_row(rec, &LogLimits::default(), &mut out);
    String::from_utf8(out).expect("utf8 output")
}

/// One string column, ASCII-formatted, without the newline.
fn zstr(s: &[u8]) -> String {
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str(s)],
    };
    zeek(&r).trim_end_matches('\n').to_owned()
}

fn id4() -> ConnId {
    ConnId {
        orig_h: IpAddr::from([10, 10, 1, 4]),
        orig_p: 1470,
        resp_h: IpAddr::from([74, 53, 140, 153]),
        resp_p: 25,
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn baseline(rel: &str) -> Option<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/zeek/baselines")
        .join(rel);
    std::fs::read_to_string(p).ok()
}

/// Zeek's first-timestamp canonifier, for one line.
fn mask_ts(line: &str) -> String {
    match line.split_once('\t') {
        Some((_, rest)) => format!("XXXXXXXXXX.XXXXXX\t{rest}"),
        None => line.to_owned(),
    }
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

// ------------------------------------------------------------------ headers

const SMTP_HEADER: &str = "#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tsmtp
#open XXXX-XX-XX-XX-XX-XX
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\thelo\tmailfrom\trcptto\tdate\tfrom\tto\tcc\treply_to\tmsg_id\tin_reply_to\tsubject\tx_originating_ip\tfirst_received\tsecond_received\tlast_reply\tpath\tuser_agent\ttls\tfuids
#types\ttime\tstring\taddr\tport\taddr\tport\tcount\tstring\tstring\tset[string]\tstring\tstring\tset[string]\tset[string]\tstring\tstring\tstring\tstring\taddr\tstring\tstring\tstring\tvector[addr]\tstring\tbool\tvector[string]
";

/// Our header with the `#open` value masked the way the baselines are.
fn header(path: &str, fields: &[FieldDef]) -> String {
    let mut out = Vec::new();
    format_zeek_header(path, fields, t0(), &mut out);
    let s = String::from_utf8(out).unwrap();
    let mut masked = String::new();
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("#open\t") {
            // YYYY-MM-DD-HH-MM-SS
            assert_eq!(v.len(), 19, "{v}");
            assert!(v
                .bytes()
                .enumerate()
                .all(|(i, c)| if [4, 7, 10, 13, 16].contains(&i) {
                    c == b'-'
                } else {
                    c.is_ascii_digit()
                }));
            masked.push_str("#open XXXX-XX-XX-XX-XX-XX\n");
        } else {
            masked.push_str(line);
            masked.push('\n');
        }
    }
    masked
}

#[test]
fn smtp_header_matches_baseline() {
    let h = header("smtp", SmtpRecord::default().fields());
    assert_eq!(h, SMTP_HEADER);
    if let Some(base) = baseline("scripts.base.protocols.smtp.basic/smtp.log") {
        let want: String = base
            .lines()
            .skip(1)
            .take(8)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(h, want);
    }
}

#[test]
fn conn_and_weird_headers_match_baselines() {
    let conn = ConnRecord {
        ts: Timestamp::ZERO,
        uid: String::new(),
        id: id4(),
        service: vec![],
        duration: None,
        orig_bytes: None,
        resp_bytes: None,
        conn_state: "S0",
        local_orig: None,
        local_resp: None,
        missed_bytes: 0,
        history: String::new(),
        orig_pkts: 0,
        orig_ip_bytes: 0,
        resp_pkts: 0,
        resp_ip_bytes: 0,
    };
    let weird = WeirdRecord {
        ts: Timestamp::ZERO,
        uid: None,
        id: None,
        name: "x",
        addl: None,
        source: None,
    };
    for (rel, path, fields) in [
        (
            "scripts.base.protocols.pop3.basic/conn.log",
            "conn",
            conn.fields(),
        ),
        (
            "scripts.base.protocols.smtp.bdat-cmd-invalid/weird.log",
            "weird",
            weird.fields(),
        ),
    ] {
        let h = header(path, fields);
        assert!(h.starts_with("#separator \\x09\n#set_separator\t,\n"));
        assert!(h.contains(&format!("\n#path\t{path}\n")));
        if let Some(base) = baseline(rel) {
            let want: String = base
                .lines()
                .skip(1)
                .take(8)
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(h, want, "{rel}");
        }
    }
}

#[test]
fn close_line() {
    let mut out = Vec::new();
    format_zeek_close(t0(), &mut out);
    let s = String::from_utf8(out).unwrap();
    assert!(
        s.starts_with("#close\t") && s.ends_with('\n') && s.len() == "#close\t".len() + 19 + 1,
        "{s:?}"
    );
}

// --------------------------------------------------------------------- rows

fn all_types_rec<'a>(set: &'a [Vec<u8>], vec: &'a [Vec<u8>], addrs: &'a [IpAddr]) -> Rec<'a> {
    Rec {
        fields: &ALL_FIELDS,
        vals: vec![
            Value::Time(Timestamp(1_254_722_767_529_046_400)),
            Value::Interval(Interval(461_731_000)),
            Value::Str(b"hello"),
            Value::Enum("tcp"),
            Value::Addr("2001:db8::1".parse().unwrap()),
            Value::Port(25),
            Value::Count(42),
            Value::Bool(true),
            Value::StrSet(set),
            Value::StrVec(vec),
            Value::AddrVec(addrs),
            Value::Unset,
        ],
    }
}

#[test]
fn row_with_every_value_type() {
    let set = [b("a"), b("b,c")];
    let vec = [b("x"), b("")];
    let addrs = ["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    let r = all_types_rec(&set, &vec, &addrs);
    assert_eq!(
        zeek(&r),
        "1254722767.529046\t0.461731\thello\ttcp\t2001:db8::1\t25\t42\tT\ta,b\\x2cc\tx,(empty)\t10.0.0.1,::1\t-\n"
    );
    let j = json(&r);
    assert_eq!(
        j,
        "{\"ts\":1254722767.529046,\"dur\":0.461731,\"s\":\"hello\",\"e\":\"tcp\",\"a\":\"2001:db8::1\",\
         \"p\":25,\"c\":42,\"b\":true,\"set\":[\"a\",\"b,c\"],\"vec\":[\"x\",\"\"],\
         \"addrs\":[\"10.0.0.1\",\"::1\"]}\n"
    );
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert!(v.get("u").is_none(), "unset fields are omitted");
    assert_eq!(v["ts"].as_f64(), Some(1_254_722_767.529_046));
}

#[test]
fn bool_false_and_negative_interval() {
    let r = Rec {
        fields: &ALL_FIELDS[..2],
        vals: vec![
            Value::Bool(false),
            Value::Interval(Interval(-1_500_000_000)),
        ],
    };
    assert_eq!(zeek(&r), "F\t-1.500000\n");
    assert_eq!(json(&r), "{\"ts\":false,\"dur\":-1.5}\n");
}

#[test]
fn smtp_row_matches_baseline() {
    let rec = SmtpRecord {
        ts: Timestamp(1_254_722_768_219_663_000),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: Some(id4()),
        trans_depth: 1,
        helo: Some(b("GP")),
        mailfrom: Some(b("gurpartap@patriots.in")),
        rcptto: Some(vec![b("raj_deol2002in@yahoo.co.in")]),
        date: Some(b("Mon, 5 Oct 2009 11:36:07 +0530")),
        from: Some(b("\"Gurpartap Singh\" <gurpartap@patriots.in>")),
        to: Some(vec![b("<raj_deol2002in@yahoo.co.in>")]),
        msg_id: Some(b("<000301ca4581$ef9e57f0$cedb07d0$@in>")),
        subject: Some(b("SMTP")),
        last_reply: Some(b("250 OK id=1Mugho-0003Dg-Un")),
        path: Some(vec![
            IpAddr::from([74, 53, 140, 153]),
            IpAddr::from([10, 10, 1, 4]),
        ]),
        user_agent: Some(b("Microsoft Office Outlook 12.0")),
        fuids: vec![
            b("FmFp351N5nhsMmAfQg"),
            b("Fqrb1K5DWEfgy4WU2"),
            b("FEFYSd1s8Onn9LynKj"),
        ],
        ..SmtpRecord::default()
    };
    let want = "XXXXXXXXXX.XXXXXX\tCHhAvVGS1DHFjwGM9\t10.10.1.4\t1470\t74.53.140.153\t25\t1\tGP\t\
                gurpartap@patriots.in\traj_deol2002in@yahoo.co.in\tMon, 5 Oct 2009 11:36:07 +0530\t\
                \"Gurpartap Singh\" <gurpartap@patriots.in>\t<raj_deol2002in@yahoo.co.in>\t-\t-\t\
                <000301ca4581$ef9e57f0$cedb07d0$@in>\t-\tSMTP\t-\t-\t-\t250 OK id=1Mugho-0003Dg-Un\t\
                74.53.140.153,10.10.1.4\tMicrosoft Office Outlook 12.0\tF\t\
                FmFp351N5nhsMmAfQg,Fqrb1K5DWEfgy4WU2,FEFYSd1s8Onn9LynKj";
    let got = zeek(&rec);
    assert_eq!(mask_ts(got.trim_end_matches('\n')), want);
    assert!(got.starts_with("1254722768.219663\t"));
    if let Some(base) = baseline("scripts.base.protocols.smtp.basic/smtp.log") {
        assert_eq!(base.lines().nth(9), Some(want));
    }
    // JSON: same values, unset omitted, sets as arrays.
    let v: serde_json::Value = serde_json::from_str(&json(&rec)).unwrap();
    assert_eq!(v["id.orig_h"], "10.10.1.4");
    assert_eq!(v["id.resp_p"], 25);
    assert_eq!(
        v["rcptto"],
        serde_json::json!(["raj_deol2002in@yahoo.co.in"])
    );
    assert_eq!(v["path"], serde_json::json!(["74.53.140.153", "10.10.1.4"]));
    assert_eq!(v["tls"], false);
    assert!(v.get("cc").is_none() && v.get("reply_to").is_none());
    assert!(v.get("is_webmail").is_none());
    let with_webmail = SmtpRecord {
        is_webmail: Some(true),
        ..rec
    };
    assert!(zeek(&with_webmail).ends_with("FEFYSd1s8Onn9LynKj\tT\n"));
}

#[test]
fn ipv6_smtp_row_matches_baseline() {
    let lo: IpAddr = "::1".parse().unwrap();
    let rec = SmtpRecord {
        ts: Timestamp(1),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: Some(ConnId {
            orig_h: lo,
            orig_p: 56660,
            resp_h: lo,
            resp_p: 25,
        }),
        trans_depth: 1,
        helo: Some(b("localhost.localdomain")),
        mailfrom: Some(b("sender@example.com")),
        rcptto: Some(vec![b("recipient@example.com")]),
        from: Some(b("sender@example.com")),
        to: Some(vec![b("recipient@example.com")]),
        subject: Some(b("subject")),
        path: Some(vec![lo, lo]),
        fuids: vec![b("FbiWxy1DVPZVVnWJYe"), b("FRF0Sp1MNQgFjUxRy1")],
        ..SmtpRecord::default()
    };
    let want = "XXXXXXXXXX.XXXXXX\tCHhAvVGS1DHFjwGM9\t::1\t56660\t::1\t25\t1\tlocalhost.localdomain\t\
                sender@example.com\trecipient@example.com\t-\tsender@example.com\trecipient@example.com\t\
                -\t-\t-\t-\tsubject\t-\t-\t-\t-\t::1,::1\t-\tF\tFbiWxy1DVPZVVnWJYe,FRF0Sp1MNQgFjUxRy1";
    assert_eq!(mask_ts(zeek(&rec).trim_end_matches('\n')), want);
    if let Some(base) = baseline("scripts.base.protocols.smtp.attachment-msg/smtp.log") {
        assert_eq!(base.lines().nth(9), Some(want));
    }
}

#[test]
fn conn_row_matches_baseline() {
    let rec = ConnRecord {
        ts: Timestamp(1),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: ConnId {
            orig_h: IpAddr::from([192, 168, 0, 4]),
            orig_p: 26242,
            resp_h: IpAddr::from([212, 227, 15, 188]),
            resp_p: 110,
        },
        service: vec![],
        duration: Some(Interval(50_692_000)),
        orig_bytes: Some(0),
        resp_bytes: Some(0),
        conn_state: "REJ",
        local_orig: Some(true),
        local_resp: Some(false),
        missed_bytes: 0,
        history: "Sr".into(),
        orig_pkts: 1,
        orig_ip_bytes: 52,
        resp_pkts: 1,
        resp_ip_bytes: 40,
    };
    let want =
        "XXXXXXXXXX.XXXXXX\tCHhAvVGS1DHFjwGM9\t192.168.0.4\t26242\t212.227.15.188\t110\ttcp\t-\t\
                0.050692\t0\t0\tREJ\tT\tF\t0\tSr\t1\t52\t1\t40\t-\t6";
    assert_eq!(mask_ts(zeek(&rec).trim_end_matches('\n')), want);
    if let Some(base) = baseline("scripts.base.protocols.pop3.basic/conn.log") {
        assert_eq!(base.lines().nth(9), Some(want));
    }
    let v: serde_json::Value = serde_json::from_str(&json(&rec)).unwrap();
    assert_eq!(v["duration"].as_f64(), Some(0.050692));
    assert_eq!(v["proto"], "tcp");
    assert_eq!(v["local_orig"], true);
    assert!(v.get("service").is_none() && v.get("tunnel_parents").is_none());
}

// ---------------------------------------------------------------- escaping

#[test]
fn escaping_rules() {
    // Non-printable bytes -> \xNN, lower-case hex.
    assert_eq!(zstr(b"a\x00b\x1b\x7f"), "a\\x00b\\x1b\\x7f");
    assert_eq!(zstr(b"\xab\xcd"), "\\xab\\xcd");
    // Backslash and the separator.
    assert_eq!(zstr(b"C:\\dir"), "C:\\\\dir");
    assert_eq!(zstr(b"a\tb"), "a\\x09b");
    assert_eq!(zstr(b"line\r\n"), "line\\x0d\\x0a");
    // A comma is only escaped inside sets/vectors.
    assert_eq!(zstr(b"a,b"), "a,b");
    let set = [b("a,b"), b("c")];
    let r = Rec {
        fields: &ONE_VEC,
        vals: vec![Value::StrSet(&set)],
    };
    assert_eq!(zeek(&r), "a\\x2cb,c\n");
    // The markers themselves.
    assert_eq!(zstr(b"-"), "\\x2d");
    assert_eq!(zstr(b"(empty)"), "\\x28empty)");
    assert_eq!(zstr(b"- "), "- ");
    let set = [b("-"), b("(empty)")];
    let r = Rec {
        fields: &ONE_VEC,
        vals: vec![Value::StrVec(&set)],
    };
    assert_eq!(zeek(&r), "\\x2d,\\x28empty)\n");
    // UTF-8 passes through; invalid bytes are escaped.
    assert_eq!(
        zstr("Grüße aus Zürich – ✓ 😀".as_bytes()),
        "Grüße aus Zürich – ✓ 😀"
    );
    assert_eq!(zstr(b"Gr\xfc\xdfe"), "Gr\\xfc\\xdfe");
    assert_eq!(zstr(b"\xc3\xa9\xff\xc3\xa9"), "é\\xffé");
    assert_eq!(zstr(b"\xf0\x9f\x98"), "\\xf0\\x9f\\x98");
    // A row must not start with '#'.
    assert_eq!(zstr(b"#x"), "\\x23x");
}

#[test]
fn empty_versus_unset() {
    static F: [FieldDef; 6] = [
        fd("a", "string"),
        fd("b", "string"),
        fd("c", "set[string]"),
        fd("d", "set[string]"),
        fd("e", "vector[addr]"),
        fd("f", "vector[string]"),
    ];
    let none: [Vec<u8>; 0] = [];
    let r = Rec {
        fields: &F,
        vals: vec![
            Value::Str(b""),
            Value::Unset,
            Value::StrSet(&none),
            Value::Unset,
            Value::AddrVec(&[]),
            Value::StrVec(&none),
        ],
    };
    assert_eq!(zeek(&r), "(empty)\t-\t(empty)\t-\t(empty)\t(empty)\n");
    assert_eq!(json(&r), "{\"a\":\"\",\"c\":[],\"e\":[],\"f\":[]}\n");
    // Through a real record.
    let s = SmtpRecord {
        rcptto: Some(vec![]),
        helo: Some(vec![]),
        ..SmtpRecord::default()
    };
    let cols: Vec<String> = zeek(&s).trim_end().split('\t').map(str::to_owned).collect();
    assert_eq!(cols[7], "(empty)"); // helo
    assert_eq!(cols[8], "-"); // mailfrom
    assert_eq!(cols[9], "(empty)"); // rcptto
    assert_eq!(cols[12], "-"); // to
    assert_eq!(cols[25], "(empty)"); // fuids
    assert_eq!(cols[2], "-"); // id.orig_h without a ConnId
}

#[test]
fn json_escaping() {
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str(b"q\"b\\s/\t\n\x01 \xc3\xa9")],
    };
    let j = json(&r);
    assert_eq!(j, "{\"s\":\"q\\\"b\\\\s/\\t\\n\\u0001 \u{e9}\"}\n");
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["s"], "q\"b\\s/\t\n\u{1} é");
    // Invalid UTF-8: Zeek escapes every non-ASCII byte as \xNN inside the
    // JSON string (so the decoded value reads `\xNN`).
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str(b"\xc3\xa9 \xff-")],
    };
    let j = json(&r);
    assert_eq!(j, "{\"s\":\"\\\\xc3\\\\xa9 \\\\xff-\"}\n");
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["s"], "\\xc3\\xa9 \\xff-");
    // No marker escaping in JSON.
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str(b"-")],
    };
    assert_eq!(json(&r), "{\"s\":\"-\"}\n");
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Unset],
    };
    assert_eq!(json(&r), "{}\n");
}

/// Every record type, in each of its modes (optional columns off and on).
fn every_record_type() -> Vec<Record> {
    use mailtap_core::{FileHashes, FileRecord};
    let conn = ConnRecord {
        ts: Timestamp::ZERO,
        uid: "C1".into(),
        id: ConnId {
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 1,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 25,
        },
        service: vec!["smtp", "ssl"],
        duration: None,
        orig_bytes: None,
        resp_bytes: None,
        conn_state: "S0",
        local_orig: None,
        local_resp: None,
        missed_bytes: 0,
        history: "S".into(),
        orig_pkts: 1,
        orig_ip_bytes: 40,
        resp_pkts: 0,
        resp_ip_bytes: 0,
    };
    let weird = WeirdRecord {
        ts: Timestamp::ZERO,
        uid: None,
        id: None,
        name: mailtap_core::Weird::NulInLine.name(),
        addl: None,
        source: None,
    };
    vec![
        Record::Conn(Box::new(conn)),
        Record::Smtp(Box::default()),
        Record::Smtp(Box::new(SmtpRecord {
            is_webmail: Some(true),
            ..SmtpRecord::default()
        })),
        Record::Weird(Box::new(weird)),
        Record::Pop3(Box::default()),
        Record::Imap(Box::new(mailtap_core::ImapRecord {
            login: "unknown",
            ..Default::default()
        })),
        Record::Ssl(Box::default()),
        Record::X509(Box::default()),
        Record::File(Box::default()),
        Record::File(Box::new(FileRecord {
            hashes: Some(FileHashes::default()),
            ..FileRecord::default()
        })),
    ]
}

#[test]
fn every_record_type_writes_its_schemas_columns() {
    for r in every_record_type() {
        let rec = r.as_log().unwrap();
        let row = zeek(rec);
        assert_eq!(
            row.trim_end_matches('\n').split('\t').count(),
            rec.fields().len(),
            "{}: {row}",
            rec.path()
        );
        let v: serde_json::Value = serde_json::from_str(&json(rec)).unwrap();
        for key in v.as_object().unwrap().keys() {
            assert!(rec.fields().iter().any(|f| f.name == key), "{key}");
        }
    }
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "test.log: 1 values for 3 columns")]
fn too_few_values_are_a_bug() {
    let r = Rec {
        fields: &ALL_FIELDS[..3],
        vals: vec![Value::Count(1)],
    };
    zeek(&r);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "test.log: 2 values for 1 columns")]
fn too_many_values_are_a_bug() {
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Count(1), Value::Count(2)],
    };
    json(&r);
}

/// Release builds keep a file readable when a record is wrong: the row is
/// held to the header's columns.
#[test]
#[cfg(not(debug_assertions))]
fn release_holds_a_wrong_row_to_the_schema() {
    let r = Rec {
        fields: &ALL_FIELDS[..3],
        vals: vec![Value::Count(1)],
    };
    assert_eq!(zeek(&r), "1\t-\t-\n");
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Count(1), Value::Count(2)],
    };
    assert_eq!(zeek(&r), "1\n");
    assert_eq!(json(&r), "{\"s\":1}\n");
}

// ------------------------------------------------------------- truncation

#[test]
fn string_limit() {
    let long = vec![b'a'; 5000];
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str(&long)],
    };
    let (s, t) = zeek_l(&r, &LogLimits::default());
    assert_eq!(s.len(), 4096 + 1);
    assert_eq!(
        t,
        Truncations {
            string: true,
            container: false
        }
    );
    assert!(t.any());
    let exact = vec![b'a'; 4096];
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str(&exact)],
    };
    assert_eq!(zeek_l(&r, &LogLimits::default()).1, Truncations::default());
    // Unlimited.
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str(&long)],
    };
    let (s, t) = zeek_l(&r, &LogLimits::UNLIMITED);
    assert_eq!((s.len(), t.any()), (5001, false));
    // The limit counts raw bytes, not escaped output; a cut inside a
    // multi-byte character leaves an escaped partial sequence.
    let l = LogLimits {
        max_string_bytes: 3,
        ..LogLimits::default()
    };
    let r = Rec {
        fields: &ONE_STR,
        vals: vec![Value::Str("a€".as_bytes())],
    };
    assert_eq!(
        zeek_l(&r, &l),
        (
            "a\\xe2\\x82\n".to_owned(),
            Truncations {
                string: true,
                container: false
            }
        )
    );
}

#[test]
fn total_string_limit() {
    // Like Zeek's test: two vectors of ten 10-byte strings, 115 bytes total:
    // the second vector is cut in the middle of its second string and the
    // rest are written empty.
    let ten: Vec<Vec<u8>> = (0..10).map(|_| b("ABCDEFGHIJ")).collect();
    static F: [FieldDef; 2] = [
        fd("strings1", "vector[string]"),
        fd("strings2", "vector[string]"),
    ];
    let r = Rec {
        fields: &F,
        vals: vec![Value::StrVec(&ten), Value::StrVec(&ten)],
    };
    let l = LogLimits {
        max_total_string_bytes: 115,
        ..LogLimits::default()
    };
    let (s, t) = zeek_l(&r, &l);
    let cols: Vec<&str> = s.trim_end().split('\t').collect();
    assert_eq!(cols[0], ["ABCDEFGHIJ"; 10].join(","));
    assert_eq!(
        cols[1],
        "ABCDEFGHIJ,ABCDE,(empty),(empty),(empty),(empty),(empty),(empty),(empty),(empty)"
    );
    assert_eq!(
        t,
        Truncations {
            string: true,
            container: false
        }
    );
    // Per-field 5 bytes.
    let l = LogLimits {
        max_string_bytes: 5,
        ..LogLimits::default()
    };
    let (s, _) = zeek_l(&r, &l);
    assert_eq!(
        s.trim_end().split('\t').next().unwrap(),
        ["ABCDE"; 10].join(",")
    );
}

#[test]
fn container_limits() {
    let ten: Vec<Vec<u8>> = (0..10).map(|i| format!("s{i}").into_bytes()).collect();
    static F: [FieldDef; 2] = [
        fd("strings1", "vector[string]"),
        fd("strings2", "vector[string]"),
    ];
    let r = Rec {
        fields: &F,
        vals: vec![Value::StrVec(&ten), Value::StrVec(&ten)],
    };
    let cols = |l: LogLimits| {
        let (s, t) = zeek_l(&r, &l);
        (
            s.trim_end()
                .split('\t')
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            t,
        )
    };
    let (c, t) = cols(LogLimits {
        max_container_elements: 5,
        ..LogLimits::default()
    });
    assert_eq!(c, ["s0,s1,s2,s3,s4", "s0,s1,s2,s3,s4"]);
    assert_eq!(
        t,
        Truncations {
            string: false,
            container: true
        }
    );
    let (c, _) = cols(LogLimits {
        max_total_container_elements: 15,
        ..LogLimits::default()
    });
    assert_eq!(c, ["s0,s1,s2,s3,s4,s5,s6,s7,s8,s9", "s0,s1,s2,s3,s4"]);
    let (c, _) = cols(LogLimits {
        max_total_container_elements: 5,
        ..LogLimits::default()
    });
    assert_eq!(c, ["s0,s1,s2,s3,s4", "(empty)"]);
    let (c, t) = cols(LogLimits::default());
    assert_eq!(t, Truncations::default());
    assert_eq!(c[1], "s0,s1,s2,s3,s4,s5,s6,s7,s8,s9");
    // JSON: same cuts, arrays.
    let mut out = Vec::new();
    format_json_row(
        &r,
        &LogLimits {
            max_total_container_elements: 5,
            ..LogLimits::default()
        },
        &mut out,
    );
    assert_eq!(
        out,
        b"{\"strings1\":[\"s0\",\"s1\",\"s2\",\"s3\",\"s4\"],\"strings2\":[]}\n"
    );
}

#[test]
fn address_limits_like_zeek() {
    // scripts.base.protocols.smtp.address-limits: 500 of each address list.
    let addrs: Vec<Vec<u8>> = (0..500)
        .map(|i| format!("a{i}@example.com").into_bytes())
        .collect();
    let path: Vec<IpAddr> = (0..500u32).map(|i| IpAddr::from(i.to_be_bytes())).collect();
    let rec = SmtpRecord {
        rcptto: Some(addrs.clone()),
        to: Some(addrs.clone()),
        cc: Some(addrs),
        path: Some(path),
        fuids: vec![b("F1")],
        ..SmtpRecord::default()
    };
    let (s, t) = zeek_l(&rec, &LogLimits::default());
    assert_eq!(
        t,
        Truncations {
            string: false,
            container: true
        }
    );
    let cols: Vec<&str> = s.trim_end().split('\t').collect();
    for c in [9, 12, 13, 22] {
        assert_eq!(cols[c].split(',').count(), 100, "column {c}");
    }
    assert_eq!(cols[25], "F1");
}

// ------------------------------------------------------------------ events

fn ev(event: Event) -> String {
    let e = EventRecord {
        ts: Timestamp(1_254_722_768_219_663_000),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: id4(),
        event,
    };
    let mut out = Vec::new();
    format_event(&e, &mut out);
    let s = String::from_utf8(out).unwrap();
    serde_json::from_str::<serde_json::Value>(&s).expect("valid JSON");
    s
}

const EV_HEAD: &str = "{\"ts\":1254722768.219663,\"event\":\"";
const EV_CONN: &str =
    "\",\"uid\":\"CHhAvVGS1DHFjwGM9\",\"id\":{\"orig_h\":\"10.10.1.4\",\"orig_p\":1470,\
                       \"resp_h\":\"74.53.140.153\",\"resp_p\":25},\"args\":{";

#[test]
fn events() {
    let e = |name: &str, args: &str| format!("{EV_HEAD}{name}{EV_CONN}{args}}}}}\n");
    assert_eq!(
        ev(Event::SmtpRequest {
            is_orig: true,
            command: b("MAIL"),
            arg: b("FROM:<a@b>")
        }),
        e(
            "smtp_request",
            "\"is_orig\":true,\"command\":\"MAIL\",\"arg\":\"FROM:<a@b>\""
        )
    );
    assert_eq!(
        ev(Event::SmtpReply { is_orig: false, code: 250, cmd: b("EHLO"), msg: b("ok \"x\""), cont_resp: true }),
        e(
            "smtp_reply",
            "\"is_orig\":false,\"code\":250,\"cmd\":\"EHLO\",\"msg\":\"ok \\\"x\\\"\",\"cont_resp\":true"
        )
    );
    assert_eq!(
        ev(Event::SmtpData {
            is_orig: true,
            data: b("Subject: \u{e9}\t")
        }),
        e(
            "smtp_data",
            "\"is_orig\":true,\"data\":\"Subject: \u{e9}\\t\""
        )
    );
    assert_eq!(
        ev(Event::SmtpUnexpected {
            is_orig: false,
            msg: b("unexpected"),
            detail: vec![0xff, b'\\']
        }),
        e(
            "smtp_unexpected",
            "\"is_orig\":false,\"msg\":\"unexpected\",\"detail\":\"\\\\xff\\\\\""
        )
    );
    assert_eq!(ev(Event::SmtpStarttls), e("smtp_starttls", ""));
    // IMAP: Zeek's two, with a string_vec as a JSON array, and mailtap's own.
    assert_eq!(
        ev(Event::ImapCapabilities {
            capabilities: vec![b("IMAP4rev1"), b("STARTTLS")]
        }),
        e(
            "imap_capabilities",
            "\"capabilities\":[\"IMAP4rev1\",\"STARTTLS\"]"
        )
    );
    assert_eq!(
        ev(Event::ImapCapabilities {
            capabilities: vec![]
        }),
        e("imap_capabilities", "\"capabilities\":[]")
    );
    assert_eq!(ev(Event::ImapStarttls), e("imap_starttls", ""));
    assert_eq!(
        ev(Event::ImapRequest {
            tag: b("a1"),
            command: b("UID FETCH"),
            arg: b("1 BODY.PEEK[]")
        }),
        e(
            "imap_request",
            "\"tag\":\"a1\",\"command\":\"UID FETCH\",\"arg\":\"1 BODY.PEEK[]\""
        )
    );
    assert_eq!(
        ev(Event::ImapResponse {
            tag: b("*"),
            status: b("OK"),
            text: b("ready")
        }),
        e(
            "imap_response",
            "\"tag\":\"*\",\"status\":\"OK\",\"text\":\"ready\""
        )
    );
    assert_eq!(
        ev(Event::ImapData {
            is_orig: false,
            section: b("BODY[]"),
            size: 42
        }),
        e(
            "imap_data",
            "\"is_orig\":false,\"section\":\"BODY[]\",\"size\":42"
        )
    );
}

// ------------------------------------------------------------------- files

fn smtp_rec(ts_secs: i64, rcpts: usize) -> SmtpRecord {
    SmtpRecord {
        ts: Timestamp(ts_secs * 1_000_000_000),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: Some(id4()),
        trans_depth: 1,
        rcptto: Some((0..rcpts).map(|i| format!("r{i}@x").into_bytes()).collect()),
        ..SmtpRecord::default()
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn log_file_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("smtp.log");
    let mut f = LogFile::new(dir.path(), "smtp", LogFormat::Zeek, LogLimits::default());
    assert_eq!(f.file_path(), p.as_path());
    f.flush().unwrap();
    assert!(!p.exists(), "no file before the first row");
    let t = f.write(&smtp_rec(1, 1)).unwrap();
    assert!(!t.any());
    assert!(p.exists(), "created with the first row");
    f.write(&smtp_rec(2, 150)).unwrap();
    assert_eq!(f.rows(), 2);
    f.flush().unwrap();
    let s = read(&p);
    assert!(s.starts_with("#separator \\x09\n#set_separator\t,\n"));
    assert_eq!(s.lines().filter(|l| !l.starts_with('#')).count(), 2);
    assert!(!s.contains("#close"));
    f.finish().unwrap();
    let s = read(&p);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 8 + 2 + 1);
    assert!(lines[10].starts_with("#close\t"));
    assert!(lines[8].starts_with("1.000000\tCHhAvVGS1DHFjwGM9\t10.10.1.4\t1470\t"));
    assert_eq!(lines[9].split('\t').nth(9).unwrap().split(',').count(), 100);
}

#[test]
fn log_file_without_rows_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = LogFile::new(dir.path(), "conn", LogFormat::Zeek, LogLimits::default());
    assert_eq!(f.rows(), 0);
    f.finish().unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn json_log_file_has_no_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = LogFile::new(dir.path(), "smtp", LogFormat::Json, LogLimits::default());
    f.write(&smtp_rec(1, 2)).unwrap();
    f.finish().unwrap();
    let s = read(&dir.path().join("smtp.log"));
    assert_eq!(s.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(s.trim_end()).unwrap();
    assert_eq!(v["ts"], serde_json::json!(1.0));
    assert_eq!(v["rcptto"], serde_json::json!(["r0@x", "r1@x"]));
}

#[test]
fn large_output_is_flushed_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = LogFile::new(dir.path(), "smtp", LogFormat::Zeek, LogLimits::default());
    for i in 0..5000 {
        f.write(&smtp_rec(i, 3)).unwrap();
    }
    // More than the 256 KiB buffer was written without an explicit flush.
    let len = std::fs::metadata(dir.path().join("smtp.log"))
        .unwrap()
        .len();
    assert!(len >= 256 * 1024, "{len}");
    f.finish().unwrap();
    let s = read(&dir.path().join("smtp.log"));
    assert_eq!(s.lines().filter(|l| !l.starts_with('#')).count(), 5000);
}

#[test]
fn dropped_log_file_keeps_rows() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut f = LogFile::new(dir.path(), "smtp", LogFormat::Zeek, LogLimits::default());
        f.write(&smtp_rec(1, 1)).unwrap();
    }
    let s = read(&dir.path().join("smtp.log"));
    assert_eq!(s.lines().filter(|l| !l.starts_with('#')).count(), 1);
    assert!(!s.contains("#close"));
}

#[test]
fn event_file_is_created_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("events.json");
    let mut f = EventFile::create(&p).unwrap();
    assert!(p.exists());
    f.write(&EventRecord {
        ts: Timestamp(0),
        uid: "C1".into(),
        id: id4(),
        event: Event::SmtpStarttls,
    })
    .unwrap();
    assert_eq!(f.events(), 1);
    f.finish().unwrap();
    let s = read(&p);
    assert!(
        s.starts_with("{\"ts\":0.0,\"event\":\"smtp_starttls\",\"uid\":\"C1\""),
        "{s}"
    );
}

fn data_rows(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn log_set_routes_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let ev_path = dir.path().join("events.jsonl");
    let mut set = LogSet::new(
        dir.path(),
        LogFormat::Zeek,
        LogLimits::default(),
        Some(&ev_path),
    )
    .unwrap();
    assert!(ev_path.exists());
    let conn = ConnRecord {
        ts: Timestamp(5_000_000_000),
        uid: "C1".into(),
        id: id4(),
        service: vec!["smtp"],
        duration: Some(Interval(1_000_000)),
        orig_bytes: Some(10),
        resp_bytes: Some(20),
        conn_state: "SF",
        local_orig: None,
        local_resp: None,
        missed_bytes: 0,
        history: "ShADadFf".into(),
        orig_pkts: 5,
        orig_ip_bytes: 300,
        resp_pkts: 5,
        resp_ip_bytes: 400,
    };
    set.write(&Record::Smtp(Box::new(smtp_rec(1, 1)))).unwrap();
    set.write(&Record::Conn(Box::new(conn))).unwrap();
    set.write(&Record::Weird(Box::new(WeirdRecord {
        ts: Timestamp(2_000_000_000),
        uid: Some("C1".into()),
        id: Some(id4()),
        name: "smtp_mail_transaction_invalid",
        addl: Some(b("rcpt to missing mail from")),
        source: Some("SMTP"),
    })))
    .unwrap();
    set.write(&Record::Event(Box::new(EventRecord {
        ts: Timestamp(3_000_000_000),
        uid: "C1".into(),
        id: id4(),
        event: Event::SmtpRequest {
            is_orig: true,
            command: b("QUIT"),
            arg: vec![],
        },
    })))
    .unwrap();
    set.write(&Record::Smtp(Box::new(smtp_rec(4, 2)))).unwrap();
    assert_eq!(
        (
            set.rows("smtp"),
            set.rows("conn"),
            set.rows("weird"),
            set.rows("files")
        ),
        (2, 1, 1, 0)
    );
    set.flush().unwrap();
    let stats = set.finish().unwrap();
    assert_eq!(stats.rows.get("smtp"), Some(&2));
    assert_eq!(stats.rows.get("conn"), Some(&1));
    assert_eq!(stats.rows.get("weird"), Some(&1));
    assert_eq!(
        (stats.events, stats.events_dropped, stats.truncation_weirds),
        (1, 0, 0)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["conn.log", "events.jsonl", "smtp.log", "weird.log"]);
    let conn_log = read(&dir.path().join("conn.log"));
    assert!(conn_log.contains("#path\tconn\n") && conn_log.contains("#close\t"));
    assert_eq!(data_rows(&conn_log)[0][7], "smtp");
    let weird = data_rows(&read(&dir.path().join("weird.log")));
    assert_eq!(
        weird[0][6..],
        [
            "smtp_mail_transaction_invalid",
            "rcpt to missing mail from",
            "F",
            "mailtap",
            "SMTP"
        ]
    );
    let events = read(&ev_path);
    assert_eq!(events.lines().count(), 1);
    assert!(events.contains("\"command\":\"QUIT\",\"arg\":\"\""));
}

#[test]
fn log_set_raises_truncation_weirds() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = LogSet::new(dir.path(), LogFormat::Zeek, LogLimits::default(), None).unwrap();
    // Event without an event stream: dropped, but counted.
    set.write(&Record::Event(Box::new(EventRecord {
        ts: Timestamp(0),
        uid: "C1".into(),
        id: id4(),
        event: Event::SmtpStarttls,
    })))
    .unwrap();
    set.write(&Record::Smtp(Box::new(smtp_rec(100, 150))))
        .unwrap();
    // Same weird name within 10 minutes: suppressed.
    set.write(&Record::Smtp(Box::new(smtp_rec(400, 150))))
        .unwrap();
    // A string cut is a different name.
    let mut long = smtp_rec(500, 1);
    long.subject = Some(vec![b'x'; 5000]);
    set.write(&Record::Smtp(Box::new(long))).unwrap();
    // More than 10 minutes after the first: logged again.
    set.write(&Record::Smtp(Box::new(smtp_rec(701, 101))))
        .unwrap();
    let stats = set.finish().unwrap();
    assert_eq!((stats.events, stats.events_dropped), (0, 1));
    assert_eq!(stats.truncation_weirds, 3);
    assert_eq!(stats.rows.get("smtp"), Some(&4));
    assert_eq!(stats.rows.get("weird"), Some(&3));
    let weird = data_rows(&read(&dir.path().join("weird.log")));
    let summary: Vec<(&str, &str, &str)> = weird
        .iter()
        .map(|r| (r[0].as_str(), r[6].as_str(), r[7].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("100.000000", "log_container_field_truncated", "SMTP::LOG"),
            ("500.000000", "log_string_field_truncated", "SMTP::LOG"),
            ("701.000000", "log_container_field_truncated", "SMTP::LOG"),
        ]
    );
    // No connection: uid and id unset; no source (as in Zeek's address-limits
    // baseline: `-  -  -  -  -  log_container_field_truncated  SMTP::LOG  F  zeek  -`).
    for r in &weird {
        assert_eq!(r[1..6], ["-", "-", "-", "-", "-"]);
        assert_eq!(r[8], "F");
        assert_eq!(r[10], "-");
    }
    let smtp = data_rows(&read(&dir.path().join("smtp.log")));
    assert_eq!(smtp[0][9].split(',').count(), 100);
    assert_eq!(smtp[2][17].len(), 4096);
}

#[test]
fn log_set_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = LogSet::new(dir.path(), LogFormat::Json, LogLimits::default(), None).unwrap();
    set.write(&Record::Smtp(Box::new(smtp_rec(100, 150))))
        .unwrap();
    set.finish().unwrap();
    let w = read(&dir.path().join("weird.log"));
    let v: serde_json::Value = serde_json::from_str(w.trim_end()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"ts": 100.0, "name": "log_container_field_truncated", "addl": "SMTP::LOG",
                           "notice": false, "peer": "mailtap"})
    );
}

#[test]
fn log_set_reports_missing_dir() {
    let missing: PathBuf = tempfile::tempdir().unwrap().path().join("nope");
    let mut set = LogSet::new(&missing, LogFormat::Zeek, LogLimits::default(), None).unwrap();
    assert!(set.write(&Record::Smtp(Box::new(smtp_rec(1, 1)))).is_err());
    assert!(LogSet::new(
        &missing,
        LogFormat::Zeek,
        LogLimits::default(),
        Some(&missing.join("ev"))
    )
    .is_err());
}

// ---------------------------------------------------------------- proptest

/// Inverse of the ASCII string escaping (for one value or one element).
fn unescape(s: &[u8]) -> Vec<u8> {
    if s == b"(empty)" {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if s[i] == b'\\' && s.get(i + 1) == Some(&b'x') && i + 4 <= s.len() {
            let hex = std::str::from_utf8(&s[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

proptest! {
    #[test]
    fn zeek_string_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let r = Rec { fields: &ONE_STR, vals: vec![Value::Str(&bytes)] };
        let mut out = Vec::new();
        format_zeek_row(&r, &LogLimits::UNLIMITED, &mut out);
        prop_assert_eq!(out.pop(), Some(b'\n'));
        prop_assert!(!out.contains(&b'\t') && !out.contains(&b'\n'));
        prop_assert_eq!(unescape(&out), bytes);
    }

    #[test]
    fn zeek_string_roundtrip_utf8(s in "\\PC{0,20}") {
        let r = Rec { fields: &ONE_STR, vals: vec![Value::Str(s.as_bytes())] };
        let mut out = Vec::new();
        format_zeek_row(&r, &LogLimits::UNLIMITED, &mut out);
        out.pop();
        prop_assert_eq!(unescape(&out), s.as_bytes());
    }

    #[test]
    fn zeek_vector_roundtrip(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..16), 1..8)) {
        let r = Rec { fields: &ONE_VEC, vals: vec![Value::StrVec(&items)] };
        let mut out = Vec::new();
        format_zeek_row(&r, &LogLimits::UNLIMITED, &mut out);
        out.pop();
        let back: Vec<Vec<u8>> = out.split(|&c| c == b',').map(unescape).collect();
        prop_assert_eq!(back, items);
    }

    #[test]
    fn json_is_always_valid(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let r = Rec { fields: &ONE_STR, vals: vec![Value::Str(&bytes)] };
        let mut out = Vec::new();
        format_json_row(&r, &LogLimits::UNLIMITED, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        if let Ok(s) = std::str::from_utf8(&bytes) {
            if !s.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)
                || ('\u{e000}'..='\u{f8ff}').contains(&c) || ('\u{fff0}'..='\u{ffff}').contains(&c)) {
                prop_assert_eq!(v["s"].as_str(), Some(s));
            }
        }
    }
}
