//! weird.log (Zeek's `Weird::Info`).

use super::*;

/// One row of weird.log.
#[derive(Clone, Debug, PartialEq)]
pub struct WeirdRecord {
    pub ts: Timestamp,
    /// Unset for weirds not tied to a connection.
    pub uid: Option<String>,
    pub id: Option<ConnId>,
    /// Zeek's name of the weird: a [`crate::Weird::name`].
    pub name: &'static str,
    pub addl: Option<Bytes>,
    /// Analyzer or component that raised it (`SMTP`, `CONTENTLINE`, `TCP`).
    pub source: Option<&'static str>,
}

zeek_record! {
    impl ZeekRecord for WeirdRecord as r {
        path: "weird";
        "ts": "time" => Value::Time(r.ts),
        "uid": "string" => opt_string(&r.uid),
        "id.orig_h": "addr" => orig_h(&r.id),
        "id.orig_p": "port" => orig_p(&r.id),
        "id.resp_h": "addr" => resp_h(&r.id),
        "id.resp_p": "port" => resp_p(&r.id),
        "name": "string" => Value::Str(r.name.as_bytes()),
        "addl": "string" => Value::opt_str(&r.addl),
        "notice": "bool" => Value::Bool(false),
        "peer": "string" => Value::Str(b"mailtap"),
        "source": "string" => opt_static(r.source),
    }
}
