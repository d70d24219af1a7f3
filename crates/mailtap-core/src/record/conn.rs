//! conn.log: one row per connection (Zeek's `Conn::Info`).

use super::*;

/// One row of conn.log (TCP connections only).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub ts: Timestamp,
    pub uid: String,
    pub id: ConnId,
    /// Confirmed analyzers, lower case, in confirmation order (`smtp`).
    pub service: Vec<&'static str>,
    pub duration: Option<Interval>,
    pub orig_bytes: Option<u64>,
    pub resp_bytes: Option<u64>,
    pub conn_state: &'static str,
    pub local_orig: Option<bool>,
    pub local_resp: Option<bool>,
    pub missed_bytes: u64,
    pub history: String,
    pub orig_pkts: u64,
    pub orig_ip_bytes: u64,
    pub resp_pkts: u64,
    pub resp_ip_bytes: u64,
}

zeek_record! {
    impl ZeekRecord for ConnRecord as r {
        path: "conn";
        // Only two or more services need joining (one is written as is).
        let joined = if r.service.len() > 1 { r.service.join(",") } else { String::new() };
        "ts": "time" => Value::Time(r.ts),
        "uid": "string" => Value::Str(r.uid.as_bytes()),
        "id.orig_h": "addr" => Value::Addr(r.id.orig_h),
        "id.orig_p": "port" => Value::Port(r.id.orig_p),
        "id.resp_h": "addr" => Value::Addr(r.id.resp_h),
        "id.resp_p": "port" => Value::Port(r.id.resp_p),
        "proto": "enum" => Value::Enum("tcp"),
        "service": "string" => match r.service[..] {
            [] => Value::Unset,
            [one] => Value::Str(one.as_bytes()),
            _ => Value::Str(joined.as_bytes()),
        },
        "duration": "interval" => Value::or_unset(r.duration.map(Value::Interval)),
        "orig_bytes": "count" => Value::opt_count(r.orig_bytes),
        "resp_bytes": "count" => Value::opt_count(r.resp_bytes),
        "conn_state": "string" => Value::Str(r.conn_state.as_bytes()),
        "local_orig": "bool" => Value::or_unset(r.local_orig.map(Value::Bool)),
        "local_resp": "bool" => Value::or_unset(r.local_resp.map(Value::Bool)),
        "missed_bytes": "count" => Value::Count(r.missed_bytes),
        "history": "string" => Value::Str(r.history.as_bytes()),
        "orig_pkts": "count" => Value::Count(r.orig_pkts),
        "orig_ip_bytes": "count" => Value::Count(r.orig_ip_bytes),
        "resp_pkts": "count" => Value::Count(r.resp_pkts),
        "resp_ip_bytes": "count" => Value::Count(r.resp_ip_bytes),
        "tunnel_parents": "set[string]" => Value::Unset,
        "ip_proto": "count" => Value::Count(6),
    }
}
