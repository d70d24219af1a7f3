//! Formatting throughput of typical smtp.log and conn.log rows.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mailtap_core::{ConnId, ConnRecord, Interval, SmtpRecord, Timestamp};
use mailtap_logs::{format_json_row, format_zeek_row, LogLimits};
use std::net::IpAddr;

fn id() -> ConnId {
    ConnId {
        orig_h: IpAddr::from([10, 10, 1, 4]),
        orig_p: 1470,
        resp_h: IpAddr::from([74, 53, 140, 153]),
        resp_p: 25,
    }
}

fn smtp() -> SmtpRecord {
    SmtpRecord {
        ts: Timestamp(1_254_722_768_219_663_000),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: Some(id()),
        trans_depth: 1,
        helo: Some(b"GP".to_vec()),
        mailfrom: Some(b"gurpartap@patriots.in".to_vec()),
        rcptto: Some(vec![b"raj_deol2002in@yahoo.co.in".to_vec()]),
        date: Some(b"Mon, 5 Oct 2009 11:36:07 +0530".to_vec()),
        from: Some(b"\"Gurpartap Singh\" <gurpartap@patriots.in>".to_vec()),
        to: Some(vec![b"<raj_deol2002in@yahoo.co.in>".to_vec()]),
        msg_id: Some(b"<000301ca4581$ef9e57f0$cedb07d0$@in>".to_vec()),
        subject: Some(b"SMTP".to_vec()),
        last_reply: Some(b"250 OK id=1Mugho-0003Dg-Un".to_vec()),
        path: Some(vec![
            IpAddr::from([74, 53, 140, 153]),
            IpAddr::from([10, 10, 1, 4]),
        ]),
        user_agent: Some(b"Microsoft Office Outlook 12.0".to_vec()),
        fuids: vec![
            b"Fel9gs4OtNEV6gUJZ5".to_vec(),
            b"Ft4M3f2yMvLlmwtbq9".to_vec(),
        ],
        ..SmtpRecord::default()
    }
}

fn conn() -> ConnRecord {
    ConnRecord {
        ts: Timestamp(1_254_722_767_492_060_000),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: id(),
        service: vec!["smtp"],
        duration: Some(Interval(1_000_000_000 + 461_731_000)),
        orig_bytes: Some(20_456),
        resp_bytes: Some(1_111),
        conn_state: "SF",
        local_orig: None,
        local_resp: None,
        missed_bytes: 0,
        history: "ShAdDaFf".into(),
        orig_pkts: 38,
        orig_ip_bytes: 22_000,
        resp_pkts: 25,
        resp_ip_bytes: 2_500,
    }
}

fn bench(c: &mut Criterion) {
    let limits = LogLimits::default();
    let (s, cn) = (smtp(), conn());
    let mut buf = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("format");
    g.throughput(Throughput::Elements(1));
    g.bench_function("zeek_smtp", |b| {
        b.iter(|| {
            buf.clear();
            black_box(format_zeek_row(black_box(&s), &limits, &mut buf));
        })
    });
    g.bench_function("zeek_conn", |b| {
        b.iter(|| {
            buf.clear();
            black_box(format_zeek_row(black_box(&cn), &limits, &mut buf));
        })
    });
    g.bench_function("json_smtp", |b| {
        b.iter(|| {
            buf.clear();
            black_box(format_json_row(black_box(&s), &limits, &mut buf));
        })
    });
    g.bench_function("json_conn", |b| {
        b.iter(|| {
            buf.clear();
            black_box(format_json_row(black_box(&cn), &limits, &mut buf));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
