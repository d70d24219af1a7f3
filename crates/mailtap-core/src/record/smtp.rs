//! smtp.log: one row per SMTP transaction (Zeek's `SMTP::Info`).

use super::*;

/// One row of smtp.log (Zeek `SMTP::Info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SmtpRecord {
    pub ts: Timestamp,
    pub uid: String,
    pub id: Option<ConnId>,
    pub trans_depth: u64,
    pub helo: Option<Bytes>,
    pub mailfrom: Option<Bytes>,
    pub rcptto: Option<Vec<Bytes>>,
    pub date: Option<Bytes>,
    pub from: Option<Bytes>,
    pub to: Option<Vec<Bytes>>,
    pub cc: Option<Vec<Bytes>>,
    pub reply_to: Option<Bytes>,
    pub msg_id: Option<Bytes>,
    pub in_reply_to: Option<Bytes>,
    pub subject: Option<Bytes>,
    pub x_originating_ip: Option<IpAddr>,
    pub first_received: Option<Bytes>,
    pub second_received: Option<Bytes>,
    pub last_reply: Option<Bytes>,
    pub path: Option<Vec<IpAddr>>,
    pub user_agent: Option<Bytes>,
    pub tls: bool,
    pub fuids: Vec<Bytes>,
    /// `Some` only when the optional `is_webmail` column is enabled
    /// (`smtp.log_is_webmail`); then it is the last column.
    pub is_webmail: Option<bool>,
}

zeek_record! {
    impl ZeekRecord for SmtpRecord as r {
        path: "smtp";
        "ts": "time" => Value::Time(r.ts),
        "uid": "string" => Value::Str(r.uid.as_bytes()),
        "id.orig_h": "addr" => orig_h(&r.id),
        "id.orig_p": "port" => orig_p(&r.id),
        "id.resp_h": "addr" => resp_h(&r.id),
        "id.resp_p": "port" => resp_p(&r.id),
        "trans_depth": "count" => Value::Count(r.trans_depth),
        "helo": "string" => Value::opt_str(&r.helo),
        "mailfrom": "string" => Value::opt_str(&r.mailfrom),
        "rcptto": "set[string]" => Value::opt_set(&r.rcptto),
        "date": "string" => Value::opt_str(&r.date),
        "from": "string" => Value::opt_str(&r.from),
        "to": "set[string]" => Value::opt_set(&r.to),
        "cc": "set[string]" => Value::opt_set(&r.cc),
        "reply_to": "string" => Value::opt_str(&r.reply_to),
        "msg_id": "string" => Value::opt_str(&r.msg_id),
        "in_reply_to": "string" => Value::opt_str(&r.in_reply_to),
        "subject": "string" => Value::opt_str(&r.subject),
        "x_originating_ip": "addr" => Value::opt_addr(r.x_originating_ip),
        "first_received": "string" => Value::opt_str(&r.first_received),
        "second_received": "string" => Value::opt_str(&r.second_received),
        "last_reply": "string" => Value::opt_str(&r.last_reply),
        "path": "vector[addr]" => Value::or_unset(r.path.as_deref().map(Value::AddrVec)),
        "user_agent": "string" => Value::opt_str(&r.user_agent),
        "tls": "bool" => Value::Bool(r.tls),
        "fuids": "vector[string]" => Value::StrVec(&r.fuids),
        // Zeek's policy/protocols/smtp/software (`smtp.log_is_webmail`).
        if let Some(webmail) = r.is_webmail => {
            "is_webmail": "bool" => Value::Bool(webmail),
        }
    }
}
