//! imap.log: mailtap's own, one row per IMAP session.

use super::*;

/// One row of imap.log (mailtap's own log; Zeek has none), one per IMAP
/// session. Passwords and SASL responses are never in it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImapRecord {
    pub ts: Timestamp,
    pub uid: String,
    pub id: Option<ConnId>,
    /// LOGIN's user, or the one a SASL PLAIN/LOGIN/XOAUTH2 exchange named.
    pub user: Option<Bytes>,
    /// `LOGIN`, the SASL mechanism of AUTHENTICATE (`PLAIN`, ...), or
    /// `PREAUTH`.
    pub auth_method: Option<Bytes>,
    /// `success`, `failure` or `unknown`.
    pub login: &'static str,
    pub login_failures: u64,
    /// AUTHENTICATE with a mechanism other than PLAIN, LOGIN, XOAUTH2.
    pub auth_other_mechanisms: u64,
    /// Mailboxes successfully selected or examined, in order, each once.
    pub mailboxes: Vec<Bytes>,
    /// The server's last capability list.
    pub capabilities: Vec<Bytes>,
    /// Client commands by kind, `NAME:count`, in order of first use.
    pub commands: Vec<Bytes>,
    /// Whole messages fetched (`BODY[]`, `RFC822`, `BINARY[]`) and bytes.
    pub messages_fetched: u64,
    pub bytes_fetched: u64,
    /// Partial fetches extracted (header, text, `<o.n>`) and bytes.
    pub partial_fetched: u64,
    pub partial_bytes_fetched: u64,
    /// Messages appended (APPEND, MULTIAPPEND) and bytes.
    pub messages_appended: u64,
    pub bytes_appended: u64,
    pub starttls: bool,
    pub compress: bool,
    pub idle: bool,
    pub no_responses: u64,
    pub bad_responses: u64,
    /// The last tagged response: status, code and text.
    pub last_response: Option<Bytes>,
}

zeek_record! {
    impl ZeekRecord for ImapRecord as r {
        path: "imap";
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
        "auth_other_mechanisms": "count" => Value::Count(r.auth_other_mechanisms),
        "mailboxes": "vector[string]" => Value::StrVec(&r.mailboxes),
        "capabilities": "vector[string]" => Value::StrVec(&r.capabilities),
        "commands": "vector[string]" => Value::StrVec(&r.commands),
        "messages_fetched": "count" => Value::Count(r.messages_fetched),
        "bytes_fetched": "count" => Value::Count(r.bytes_fetched),
        "partial_fetched": "count" => Value::Count(r.partial_fetched),
        "partial_bytes_fetched": "count" => Value::Count(r.partial_bytes_fetched),
        "messages_appended": "count" => Value::Count(r.messages_appended),
        "bytes_appended": "count" => Value::Count(r.bytes_appended),
        "starttls": "bool" => Value::Bool(r.starttls),
        "compress": "bool" => Value::Bool(r.compress),
        "idle": "bool" => Value::Bool(r.idle),
        "no_responses": "count" => Value::Count(r.no_responses),
        "bad_responses": "count" => Value::Count(r.bad_responses),
        "last_response": "string" => Value::opt_str(&r.last_response),
    }
}
