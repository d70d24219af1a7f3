//! pop3.log: mailtap's own, one row per POP3 session.

use super::*;

/// One row of pop3.log (mailtap's own log: Zeek has none), one per session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pop3Record {
    pub ts: Timestamp,
    pub uid: String,
    pub id: Option<ConnId>,
    pub user: Option<Bytes>,
    /// `USER/PASS`, `APOP`, or the SASL mechanism of `AUTH` (`PLAIN`, ...).
    pub auth_method: Option<Bytes>,
    /// `success`, `failure` or `unknown`.
    pub login: &'static str,
    pub login_failures: u64,
    pub messages_retrieved: u64,
    pub bytes_retrieved: u64,
    pub messages_deleted: u64,
    pub tls: bool,
    pub last_reply: Option<Bytes>,
}

zeek_record! {
    impl ZeekRecord for Pop3Record as r {
        path: "pop3";
        "ts": "time" => Value::Time(r.ts),
        "uid": "string" => Value::Str(r.uid.as_bytes()),
        "id.orig_h": "addr" => orig_h(&r.id),
        "id.orig_p": "port" => orig_p(&r.id),
        "id.resp_h": "addr" => resp_h(&r.id),
        "id.resp_p": "port" => resp_p(&r.id),
        "user": "string" => Value::opt_str(&r.user),
        "auth_method": "string" => Value::opt_str(&r.auth_method),
        "login": "string" => Value::Str(r.login.as_bytes()),
        "login_failures": "count" => Value::Count(r.login_failures),
        "messages_retrieved": "count" => Value::Count(r.messages_retrieved),
        "bytes_retrieved": "count" => Value::Count(r.bytes_retrieved),
        "messages_deleted": "count" => Value::Count(r.messages_deleted),
        "tls": "bool" => Value::Bool(r.tls),
        "last_reply": "string" => Value::opt_str(&r.last_reply),
    }
}
