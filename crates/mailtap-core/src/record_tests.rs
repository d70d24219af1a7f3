//! Tests of the record schemas: every row has exactly its schema's
//! columns, in every mode, with values of the columns' types.

use super::*;
use std::collections::HashSet;

fn id() -> ConnId {
    ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "2001:db8::1".parse().unwrap(),
        resp_p: 25,
    }
}

fn b(s: &str) -> Bytes {
    s.as_bytes().to_vec()
}

fn conn(service: Vec<&'static str>, set: bool) -> ConnRecord {
    ConnRecord {
        ts: Timestamp(1),
        uid: "C1".into(),
        id: id(),
        service,
        duration: set.then_some(Interval(5)),
        orig_bytes: set.then_some(1),
        resp_bytes: set.then_some(2),
        conn_state: "SF",
        local_orig: set.then_some(true),
        local_resp: set.then_some(false),
        missed_bytes: 3,
        history: "ShAdDaFf".into(),
        orig_pkts: 4,
        orig_ip_bytes: 5,
        resp_pkts: 6,
        resp_ip_bytes: 7,
    }
}

fn smtp_full(is_webmail: Option<bool>) -> SmtpRecord {
    SmtpRecord {
        ts: Timestamp(1),
        uid: "C1".into(),
        id: Some(id()),
        trans_depth: 1,
        helo: Some(b("h")),
        mailfrom: Some(b("a@b")),
        rcptto: Some(vec![b("c@d")]),
        date: Some(b("d")),
        from: Some(b("f")),
        to: Some(vec![b("t")]),
        cc: Some(vec![b("c")]),
        reply_to: Some(b("r")),
        msg_id: Some(b("m")),
        in_reply_to: Some(b("i")),
        subject: Some(b("s")),
        x_originating_ip: Some(id().orig_h),
        first_received: Some(b("1")),
        second_received: Some(b("2")),
        last_reply: Some(b("250 ok")),
        path: Some(vec![id().orig_h, id().resp_h]),
        user_agent: Some(b("ua")),
        tls: true,
        fuids: vec![b("F1")],
        is_webmail,
    }
}

fn weird(set: bool) -> WeirdRecord {
    WeirdRecord {
        ts: Timestamp(1),
        uid: set.then(|| "C1".into()),
        id: set.then(id),
        name: crate::Weird::NulInLine.name(),
        addl: set.then(|| b("x")),
        source: set.then_some("SMTP"),
    }
}

fn pop3_full() -> Pop3Record {
    Pop3Record {
        id: Some(id()),
        user: Some(b("u")),
        auth_method: Some(b("APOP")),
        login: "success",
        last_reply: Some(b("+OK")),
        ..Pop3Record::default()
    }
}

fn ssl_full() -> SslRecord {
    SslRecord {
        id: Some(id()),
        version: Some(b("TLSv13")),
        cipher: Some(b("c")),
        curve: Some(b("x25519")),
        server_name: Some(b("mx")),
        last_alert: Some(b("a")),
        next_protocol: Some(b("smtp")),
        ssl_history: b("Cs"),
        cert_chain_fps: Some(vec![b("ab")]),
        client_cert_chain_fps: Some(vec![]),
        sni_matches_cert: Some(true),
        ja4: Some(b("t13")),
        ja4s: Some(b("t13s")),
        ..SslRecord::default()
    }
}

fn x509_full() -> X509Record {
    X509Record {
        key_type: Some(b("rsa")),
        key_length: Some(2048),
        exponent: Some(b("65537")),
        curve: Some(b("c")),
        san_dns: Some(vec![b("mx")]),
        san_uri: Some(vec![b("u")]),
        san_email: Some(vec![b("e")]),
        san_ip: Some(vec![id().orig_h]),
        basic_constraints_ca: Some(false),
        basic_constraints_path_len: Some(1),
        not_valid_after: 253_402_300_799,
        ..X509Record::default()
    }
}

fn file_full(hashes: Option<FileHashes>) -> FileRecord {
    FileRecord {
        uid: Some("C1".into()),
        id: Some(id()),
        source: Some("SMTP"),
        analyzers: vec![b("SHA256")],
        mime_type: Some(b("text/plain")),
        filename: Some(b("a.txt")),
        local_orig: Some(true),
        is_orig: Some(false),
        total_bytes: Some(9),
        parent_fuid: Some("F0".into()),
        hashes,
        ..FileRecord::default()
    }
}

/// Every record type in each of its modes (optional columns off and
/// on), with its optional values unset and set.
fn samples() -> Vec<Box<dyn ZeekRecord>> {
    let hashes = FileHashes {
        md5: Some("m".into()),
        sha1: None,
        sha256: Some("s".into()),
    };
    vec![
        Box::new(conn(vec![], false)),
        Box::new(conn(vec!["smtp"], true)),
        Box::new(conn(vec!["smtp", "ssl"], true)),
        Box::new(SmtpRecord::default()),
        Box::new(SmtpRecord {
            is_webmail: Some(false),
            ..SmtpRecord::default()
        }),
        Box::new(smtp_full(None)),
        Box::new(smtp_full(Some(true))),
        Box::new(weird(false)),
        Box::new(weird(true)),
        Box::new(Pop3Record::default()),
        Box::new(pop3_full()),
        Box::new(ImapRecord::default()),
        Box::new(ImapRecord {
            id: Some(ConnId {
                orig_h: "10.0.0.1".parse().unwrap(),
                orig_p: 40000,
                resp_h: "10.0.0.2".parse().unwrap(),
                resp_p: 143,
            }),
            user: Some(b"u".to_vec()),
            auth_method: Some(b"LOGIN".to_vec()),
            login: "success",
            mailboxes: vec![b"INBOX".to_vec()],
            commands: vec![b"LOGIN:1".to_vec()],
            last_response: Some(b"OK done".to_vec()),
            ..ImapRecord::default()
        }),
        Box::new(SslRecord::default()),
        Box::new(ssl_full()),
        Box::new(X509Record::default()),
        Box::new(x509_full()),
        Box::new(FileRecord::default()),
        Box::new(FileRecord {
            hashes: Some(FileHashes::default()),
            ..FileRecord::default()
        }),
        Box::new(file_full(None)),
        Box::new(file_full(Some(hashes))),
    ]
}

/// Whether a value may stand in a column of Zeek type `ty`.
fn fits(v: &Value<'_>, ty: &str) -> bool {
    match v {
        Value::Unset => true,
        Value::Time(_) | Value::Seconds(_) => ty == "time",
        Value::Interval(_) => ty == "interval",
        Value::Str(_) => ty == "string",
        Value::Enum(_) => ty == "enum",
        Value::Addr(_) => ty == "addr",
        Value::Port(_) => ty == "port",
        Value::Count(_) => ty == "count",
        Value::Bool(_) => ty == "bool",
        Value::StrSet(_) => ty == "set[string]",
        Value::StrVec(_) => ty == "vector[string]",
        Value::AddrVec(_) => ty == "vector[addr]",
    }
}

#[test]
fn every_row_has_exactly_its_schemas_columns() {
    for rec in samples() {
        let fields = rec.fields();
        let mut n = 0;
        rec.values(&mut |v| {
            let f = fields.get(n).unwrap_or_else(|| {
                panic!(
                    "{}: more values than its {} fields",
                    rec.path(),
                    fields.len()
                )
            });
            assert!(
                fits(&v, f.ty),
                "{}.{}: {v:?} in a {}",
                rec.path(),
                f.name,
                f.ty
            );
            n += 1;
        });
        assert_eq!(n, fields.len(), "{}: values and fields", rec.path());
    }
}

#[test]
fn schemas_are_prefixes_of_all_columns_with_unique_names() {
    let all: [(&str, &[FieldDef]); 8] = [
        ("conn", ConnRecord::FIELDS),
        ("smtp", SmtpRecord::FIELDS),
        ("weird", WeirdRecord::FIELDS),
        ("pop3", Pop3Record::FIELDS),
        ("imap", ImapRecord::FIELDS),
        ("ssl", SslRecord::FIELDS),
        ("x509", X509Record::FIELDS),
        ("files", FileRecord::FIELDS),
    ];
    for (path, fields) in all {
        let names: HashSet<&str> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), fields.len(), "{path}: a column named twice");
    }
    for rec in samples() {
        let (_, all_fields) = all.iter().find(|(p, _)| *p == rec.path()).unwrap();
        assert!(all_fields.starts_with(rec.fields()), "{}", rec.path());
    }
    // The optional columns and when they are there.
    assert_eq!(SmtpRecord::default().fields().len(), 26);
    assert_eq!(smtp_full(Some(false)).fields().len(), 27);
    assert_eq!(SmtpRecord::FIELDS[26].name, "is_webmail");
    assert_eq!(FileRecord::default().fields().len(), 21);
    assert_eq!(file_full(Some(FileHashes::default())).fields().len(), 27);
    assert_eq!(FileRecord::FIELDS[21].name, "md5");
    assert_eq!(ConnRecord::FIELDS.len(), 22);
    assert_eq!(WeirdRecord::FIELDS.len(), 11);
    assert_eq!(Pop3Record::FIELDS.len(), 15);
    assert_eq!(ImapRecord::FIELDS.len(), 26);
    assert_eq!(SslRecord::FIELDS.len(), 20);
    assert_eq!(X509Record::FIELDS.len(), 22);
}

#[test]
fn services_are_joined_with_commas() {
    let service = |s: Vec<&'static str>| {
        let mut got = None;
        let mut col = 0;
        conn(s, false).values(&mut |v| {
            if col == 7 {
                got = Some(match v {
                    Value::Str(s) => String::from_utf8(s.to_vec()).unwrap(),
                    Value::Unset => "-".into(),
                    other => panic!("{other:?}"),
                });
            }
            col += 1;
        });
        got.unwrap()
    };
    assert_eq!(service(vec![]), "-");
    assert_eq!(service(vec!["smtp"]), "smtp");
    assert_eq!(service(vec!["smtp", "ssl"]), "smtp,ssl");
}
