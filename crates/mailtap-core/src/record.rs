//! Log records and their Zeek schemas.
//!
//! Each record type knows its log path, its columns (`#fields`/`#types`) and
//! how to list its values as [`Value`]s; the sinks turn those into Zeek TSV or
//! JSON. Optional Zeek fields are `Option`s (`None` is written `-`); an empty
//! string, set or vector is written `(empty)`.

use crate::{Bytes, Interval, Timestamp};
use std::net::IpAddr;

/// A TCP connection's endpoints, originator first (Zeek `conn_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
}

/// One column of a log: its Zeek name and Zeek type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: &'static str,
    pub ty: &'static str,
}

const fn f(name: &'static str, ty: &'static str) -> FieldDef {
    FieldDef { name, ty }
}

/// A value of one column, borrowed from the record.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Unset,
    Time(Timestamp),
    Interval(Interval),
    Str(&'a [u8]),
    Enum(&'a str),
    Addr(IpAddr),
    Port(u16),
    Count(u64),
    Bool(bool),
    /// `set[string]`: order is not meaningful.
    StrSet(&'a [Bytes]),
    /// `vector[string]`: order is meaningful.
    StrVec(&'a [Bytes]),
    /// `vector[addr]`.
    AddrVec(&'a [IpAddr]),
    /// A Zeek `time` in whole seconds since the epoch, for times that may
    /// lie outside [`Timestamp`]'s nanosecond range (certificate validity
    /// ends as late as 9999-12-31).
    Seconds(i64),
}

impl<'a> Value<'a> {
    pub fn opt_str(v: &'a Option<Bytes>) -> Value<'a> {
        match v {
            Some(s) => Value::Str(s),
            None => Value::Unset,
        }
    }
    pub fn opt_set(v: &'a Option<Vec<Bytes>>) -> Value<'a> {
        match v {
            Some(s) => Value::StrSet(s),
            None => Value::Unset,
        }
    }
    pub fn opt_vec(v: &'a Option<Vec<Bytes>>) -> Value<'a> {
        match v {
            Some(s) => Value::StrVec(s),
            None => Value::Unset,
        }
    }
    pub fn opt_addr(v: Option<IpAddr>) -> Value<'a> {
        v.map(Value::Addr).unwrap_or(Value::Unset)
    }
    pub fn opt_count(v: Option<u64>) -> Value<'a> {
        v.map(Value::Count).unwrap_or(Value::Unset)
    }
}

/// A record that can be written to a Zeek log.
pub trait ZeekRecord {
    /// The log's `#path`, e.g. `smtp`.
    fn path(&self) -> &'static str;
    /// The columns, in order. Must be the same for every record of a path
    /// within one run (a writer takes the schema of its first record).
    fn fields(&self) -> &'static [FieldDef];
    /// Calls `out` once per column, in the order of [`ZeekRecord::fields`].
    fn values(&self, out: &mut dyn FnMut(Value<'_>));
}

/// Everything the analyzers produce, as it crosses to the collector.
#[derive(Clone, Debug)]
pub enum Record {
    Conn(Box<ConnRecord>),
    Smtp(Box<SmtpRecord>),
    Weird(Box<WeirdRecord>),
    Event(Box<crate::EventRecord>),
    Pop3(Box<Pop3Record>),
    File(Box<FileRecord>),
    Ssl(Box<SslRecord>),
    X509(Box<X509Record>),
    /// Bytes of an extracted message, in order (see [`crate::mail`]).
    EmailData(Box<crate::mail::EmailChunk>),
    /// The end of an extracted message and its metadata.
    EmailMeta(Box<crate::mail::EmailMeta>),
}

/// Heap bytes counted for every allocation a record makes besides its
/// payload: the allocator's header and rounding, roughly.
const ALLOC_SLACK: usize = 16;

/// What [`Record::approx_bytes`] adds for the strings and lists of a log
/// row, which it does not walk (rows are few; events and message bytes,
/// which it measures, are the many).
const ROW_EXTRA: usize = 256;

impl Record {
    /// Approximately the memory the record holds: its slot in a `Vec`, its
    /// box, its uid and the bytes it carries (an event's arguments, a
    /// message chunk). Cheap (no walk over a row's lists), for the byte
    /// bounds of the queues between threads.
    #[inline]
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Record>()
            + ALLOC_SLACK
            + match self {
                Record::Event(e) => {
                    size_of::<crate::EventRecord>()
                        + e.uid.capacity()
                        + ALLOC_SLACK
                        + e.event.payload_bytes()
                }
                Record::EmailData(c) => {
                    size_of::<crate::mail::EmailChunk>()
                        + c.uid.capacity()
                        + c.data.capacity()
                        + 2 * ALLOC_SLACK
                }
                Record::Conn(_) => size_of::<ConnRecord>() + ROW_EXTRA,
                Record::Smtp(_) => size_of::<SmtpRecord>() + ROW_EXTRA,
                Record::Weird(_) => size_of::<WeirdRecord>() + ROW_EXTRA,
                Record::Pop3(_) => size_of::<Pop3Record>() + ROW_EXTRA,
                Record::File(_) => size_of::<FileRecord>() + ROW_EXTRA,
                Record::Ssl(_) => size_of::<SslRecord>() + ROW_EXTRA,
                Record::X509(_) => size_of::<X509Record>() + ROW_EXTRA,
                Record::EmailMeta(_) => size_of::<crate::mail::EmailMeta>() + ROW_EXTRA,
            }
    }

    /// The record as a Zeek log record, or `None` for events (which go to
    /// the event stream, not a log).
    pub fn as_log(&self) -> Option<&dyn ZeekRecord> {
        match self {
            Record::Conn(r) => Some(&**r),
            Record::Smtp(r) => Some(&**r),
            Record::Weird(r) => Some(&**r),
            Record::Pop3(r) => Some(&**r),
            Record::File(r) => Some(&**r),
            Record::Ssl(r) => Some(&**r),
            Record::X509(r) => Some(&**r),
            Record::Event(_) | Record::EmailData(_) | Record::EmailMeta(_) => None,
        }
    }
}

// ---------------------------------------------------------------- conn.log

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

static CONN_FIELDS: [FieldDef; 22] = [
    f("ts", "time"),
    f("uid", "string"),
    f("id.orig_h", "addr"),
    f("id.orig_p", "port"),
    f("id.resp_h", "addr"),
    f("id.resp_p", "port"),
    f("proto", "enum"),
    f("service", "string"),
    f("duration", "interval"),
    f("orig_bytes", "count"),
    f("resp_bytes", "count"),
    f("conn_state", "string"),
    f("local_orig", "bool"),
    f("local_resp", "bool"),
    f("missed_bytes", "count"),
    f("history", "string"),
    f("orig_pkts", "count"),
    f("orig_ip_bytes", "count"),
    f("resp_pkts", "count"),
    f("resp_ip_bytes", "count"),
    f("tunnel_parents", "set[string]"),
    f("ip_proto", "count"),
];

fn id_values(id: &ConnId, out: &mut dyn FnMut(Value<'_>)) {
    out(Value::Addr(id.orig_h));
    out(Value::Port(id.orig_p));
    out(Value::Addr(id.resp_h));
    out(Value::Port(id.resp_p));
}

impl ZeekRecord for ConnRecord {
    fn path(&self) -> &'static str {
        "conn"
    }
    fn fields(&self) -> &'static [FieldDef] {
        &CONN_FIELDS
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        out(Value::Str(self.uid.as_bytes()));
        id_values(&self.id, out);
        out(Value::Enum("tcp"));
        if self.service.is_empty() {
            out(Value::Unset);
        } else {
            let s = self.service.join(",");
            out(Value::Str(s.as_bytes()));
        }
        out(self.duration.map(Value::Interval).unwrap_or(Value::Unset));
        out(Value::opt_count(self.orig_bytes));
        out(Value::opt_count(self.resp_bytes));
        out(Value::Str(self.conn_state.as_bytes()));
        out(self.local_orig.map(Value::Bool).unwrap_or(Value::Unset));
        out(self.local_resp.map(Value::Bool).unwrap_or(Value::Unset));
        out(Value::Count(self.missed_bytes));
        out(Value::Str(self.history.as_bytes()));
        out(Value::Count(self.orig_pkts));
        out(Value::Count(self.orig_ip_bytes));
        out(Value::Count(self.resp_pkts));
        out(Value::Count(self.resp_ip_bytes));
        out(Value::Unset);
        out(Value::Count(6));
    }
}

// ---------------------------------------------------------------- smtp.log

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

static SMTP_FIELDS: [FieldDef; 27] = [
    f("ts", "time"),
    f("uid", "string"),
    f("id.orig_h", "addr"),
    f("id.orig_p", "port"),
    f("id.resp_h", "addr"),
    f("id.resp_p", "port"),
    f("trans_depth", "count"),
    f("helo", "string"),
    f("mailfrom", "string"),
    f("rcptto", "set[string]"),
    f("date", "string"),
    f("from", "string"),
    f("to", "set[string]"),
    f("cc", "set[string]"),
    f("reply_to", "string"),
    f("msg_id", "string"),
    f("in_reply_to", "string"),
    f("subject", "string"),
    f("x_originating_ip", "addr"),
    f("first_received", "string"),
    f("second_received", "string"),
    f("last_reply", "string"),
    f("path", "vector[addr]"),
    f("user_agent", "string"),
    f("tls", "bool"),
    f("fuids", "vector[string]"),
    f("is_webmail", "bool"),
];

impl ZeekRecord for SmtpRecord {
    fn path(&self) -> &'static str {
        "smtp"
    }
    fn fields(&self) -> &'static [FieldDef] {
        if self.is_webmail.is_some() {
            &SMTP_FIELDS
        } else {
            &SMTP_FIELDS[..26]
        }
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        out(Value::Str(self.uid.as_bytes()));
        match &self.id {
            Some(id) => id_values(id, out),
            None => (0..4).for_each(|_| out(Value::Unset)),
        }
        out(Value::Count(self.trans_depth));
        out(Value::opt_str(&self.helo));
        out(Value::opt_str(&self.mailfrom));
        out(Value::opt_set(&self.rcptto));
        out(Value::opt_str(&self.date));
        out(Value::opt_str(&self.from));
        out(Value::opt_set(&self.to));
        out(Value::opt_set(&self.cc));
        out(Value::opt_str(&self.reply_to));
        out(Value::opt_str(&self.msg_id));
        out(Value::opt_str(&self.in_reply_to));
        out(Value::opt_str(&self.subject));
        out(Value::opt_addr(self.x_originating_ip));
        out(Value::opt_str(&self.first_received));
        out(Value::opt_str(&self.second_received));
        out(Value::opt_str(&self.last_reply));
        match &self.path {
            Some(p) => out(Value::AddrVec(p)),
            None => out(Value::Unset),
        }
        out(Value::opt_str(&self.user_agent));
        out(Value::Bool(self.tls));
        out(Value::StrVec(&self.fuids));
        if let Some(w) = self.is_webmail {
            out(Value::Bool(w));
        }
    }
}

// --------------------------------------------------------------- weird.log

/// One row of weird.log.
#[derive(Clone, Debug, PartialEq)]
pub struct WeirdRecord {
    pub ts: Timestamp,
    /// Unset for weirds not tied to a connection.
    pub uid: Option<String>,
    pub id: Option<ConnId>,
    pub name: &'static str,
    pub addl: Option<Bytes>,
    /// Analyzer or component that raised it (`SMTP`, `CONTENTLINE`, `TCP`).
    pub source: Option<&'static str>,
}

static WEIRD_FIELDS: [FieldDef; 11] = [
    f("ts", "time"),
    f("uid", "string"),
    f("id.orig_h", "addr"),
    f("id.orig_p", "port"),
    f("id.resp_h", "addr"),
    f("id.resp_p", "port"),
    f("name", "string"),
    f("addl", "string"),
    f("notice", "bool"),
    f("peer", "string"),
    f("source", "string"),
];

impl ZeekRecord for WeirdRecord {
    fn path(&self) -> &'static str {
        "weird"
    }
    fn fields(&self) -> &'static [FieldDef] {
        &WEIRD_FIELDS
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        match &self.uid {
            Some(u) => out(Value::Str(u.as_bytes())),
            None => out(Value::Unset),
        }
        match &self.id {
            Some(id) => id_values(id, out),
            None => (0..4).for_each(|_| out(Value::Unset)),
        }
        out(Value::Str(self.name.as_bytes()));
        out(Value::opt_str(&self.addl));
        out(Value::Bool(false));
        out(Value::Str(b"mailtap"));
        match self.source {
            Some(s) => out(Value::Str(s.as_bytes())),
            None => out(Value::Unset),
        }
    }
}

// ---------------------------------------------------------------- pop3.log

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

static POP3_FIELDS: [FieldDef; 15] = [
    f("ts", "time"),
    f("uid", "string"),
    f("id.orig_h", "addr"),
    f("id.orig_p", "port"),
    f("id.resp_h", "addr"),
    f("id.resp_p", "port"),
    f("user", "string"),
    f("auth_method", "string"),
    f("login", "string"),
    f("login_failures", "count"),
    f("messages_retrieved", "count"),
    f("bytes_retrieved", "count"),
    f("messages_deleted", "count"),
    f("tls", "bool"),
    f("last_reply", "string"),
];

impl ZeekRecord for Pop3Record {
    fn path(&self) -> &'static str {
        "pop3"
    }
    fn fields(&self) -> &'static [FieldDef] {
        &POP3_FIELDS
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        out(Value::Str(self.uid.as_bytes()));
        match &self.id {
            Some(id) => id_values(id, out),
            None => (0..4).for_each(|_| out(Value::Unset)),
        }
        out(Value::opt_str(&self.user));
        out(Value::opt_str(&self.auth_method));
        out(Value::Str(self.login.as_bytes()));
        out(Value::Count(self.login_failures));
        out(Value::Count(self.messages_retrieved));
        out(Value::Count(self.bytes_retrieved));
        out(Value::Count(self.messages_deleted));
        out(Value::Bool(self.tls));
        out(Value::opt_str(&self.last_reply));
    }
}

// ----------------------------------------------------------------- ssl.log

/// One row of ssl.log (Zeek `SSL::Info` with its default columns), plus
/// mailtap's JA4 and JA4S fingerprints as the last two columns (beyond
/// Zeek's base scripts: docs/outputs.md).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SslRecord {
    pub ts: Timestamp,
    pub uid: String,
    pub id: Option<ConnId>,
    /// `TLSv12`, `TLSv13`, `SSLv3`, `SSLv2`, `DTLSv12`, `unknown-N`.
    pub version: Option<Bytes>,
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, or `unknown-N`.
    pub cipher: Option<Bytes>,
    /// `secp256r1`, `x25519`, ...
    pub curve: Option<Bytes>,
    pub server_name: Option<Bytes>,
    pub resumed: bool,
    pub last_alert: Option<Bytes>,
    pub next_protocol: Option<Bytes>,
    pub established: bool,
    pub ssl_history: Bytes,
    /// SHA-256 fingerprints of the server's certificates, leaf first.
    pub cert_chain_fps: Option<Vec<Bytes>>,
    pub client_cert_chain_fps: Option<Vec<Bytes>>,
    pub sni_matches_cert: Option<bool>,
    pub ja4: Option<Bytes>,
    pub ja4s: Option<Bytes>,
}

static SSL_FIELDS: [FieldDef; 20] = [
    f("ts", "time"),
    f("uid", "string"),
    f("id.orig_h", "addr"),
    f("id.orig_p", "port"),
    f("id.resp_h", "addr"),
    f("id.resp_p", "port"),
    f("version", "string"),
    f("cipher", "string"),
    f("curve", "string"),
    f("server_name", "string"),
    f("resumed", "bool"),
    f("last_alert", "string"),
    f("next_protocol", "string"),
    f("established", "bool"),
    f("ssl_history", "string"),
    f("cert_chain_fps", "vector[string]"),
    f("client_cert_chain_fps", "vector[string]"),
    f("sni_matches_cert", "bool"),
    f("ja4", "string"),
    f("ja4s", "string"),
];

impl ZeekRecord for SslRecord {
    fn path(&self) -> &'static str {
        "ssl"
    }
    fn fields(&self) -> &'static [FieldDef] {
        &SSL_FIELDS
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        out(Value::Str(self.uid.as_bytes()));
        match &self.id {
            Some(id) => id_values(id, out),
            None => (0..4).for_each(|_| out(Value::Unset)),
        }
        out(Value::opt_str(&self.version));
        out(Value::opt_str(&self.cipher));
        out(Value::opt_str(&self.curve));
        out(Value::opt_str(&self.server_name));
        out(Value::Bool(self.resumed));
        out(Value::opt_str(&self.last_alert));
        out(Value::opt_str(&self.next_protocol));
        out(Value::Bool(self.established));
        out(Value::Str(&self.ssl_history));
        out(Value::opt_vec(&self.cert_chain_fps));
        out(Value::opt_vec(&self.client_cert_chain_fps));
        out(self
            .sni_matches_cert
            .map(Value::Bool)
            .unwrap_or(Value::Unset));
        out(Value::opt_str(&self.ja4));
        out(Value::opt_str(&self.ja4s));
    }
}

// ---------------------------------------------------------------- x509.log

/// One row of x509.log (Zeek 8's `X509::Info`: one row per certificate,
/// keyed by its SHA-256 fingerprint, no uid).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct X509Record {
    pub ts: Timestamp,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: Bytes,
    pub version: u64,
    /// Upper-case hex, as Zeek prints it.
    pub serial: Bytes,
    pub subject: Bytes,
    pub issuer: Bytes,
    /// Seconds since the epoch (may lie beyond 2262).
    pub not_valid_before: i64,
    pub not_valid_after: i64,
    pub key_alg: Bytes,
    pub sig_alg: Bytes,
    pub key_type: Option<Bytes>,
    pub key_length: Option<u64>,
    pub exponent: Option<Bytes>,
    pub curve: Option<Bytes>,
    pub san_dns: Option<Vec<Bytes>>,
    pub san_uri: Option<Vec<Bytes>>,
    pub san_email: Option<Vec<Bytes>>,
    pub san_ip: Option<Vec<IpAddr>>,
    pub basic_constraints_ca: Option<bool>,
    pub basic_constraints_path_len: Option<u64>,
    pub host_cert: bool,
    pub client_cert: bool,
}

static X509_FIELDS: [FieldDef; 22] = [
    f("ts", "time"),
    f("fingerprint", "string"),
    f("certificate.version", "count"),
    f("certificate.serial", "string"),
    f("certificate.subject", "string"),
    f("certificate.issuer", "string"),
    f("certificate.not_valid_before", "time"),
    f("certificate.not_valid_after", "time"),
    f("certificate.key_alg", "string"),
    f("certificate.sig_alg", "string"),
    f("certificate.key_type", "string"),
    f("certificate.key_length", "count"),
    f("certificate.exponent", "string"),
    f("certificate.curve", "string"),
    f("san.dns", "vector[string]"),
    f("san.uri", "vector[string]"),
    f("san.email", "vector[string]"),
    f("san.ip", "vector[addr]"),
    f("basic_constraints.ca", "bool"),
    f("basic_constraints.path_len", "count"),
    f("host_cert", "bool"),
    f("client_cert", "bool"),
];

impl ZeekRecord for X509Record {
    fn path(&self) -> &'static str {
        "x509"
    }
    fn fields(&self) -> &'static [FieldDef] {
        &X509_FIELDS
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        out(Value::Str(&self.fingerprint));
        out(Value::Count(self.version));
        out(Value::Str(&self.serial));
        out(Value::Str(&self.subject));
        out(Value::Str(&self.issuer));
        out(Value::Seconds(self.not_valid_before));
        out(Value::Seconds(self.not_valid_after));
        out(Value::Str(&self.key_alg));
        out(Value::Str(&self.sig_alg));
        out(Value::opt_str(&self.key_type));
        out(Value::opt_count(self.key_length));
        out(Value::opt_str(&self.exponent));
        out(Value::opt_str(&self.curve));
        out(Value::opt_vec(&self.san_dns));
        out(Value::opt_vec(&self.san_uri));
        out(Value::opt_vec(&self.san_email));
        match &self.san_ip {
            Some(v) => out(Value::AddrVec(v)),
            None => out(Value::Unset),
        }
        out(self
            .basic_constraints_ca
            .map(Value::Bool)
            .unwrap_or(Value::Unset));
        out(Value::opt_count(self.basic_constraints_path_len));
        out(Value::Bool(self.host_cert));
        out(Value::Bool(self.client_cert));
    }
}

// --------------------------------------------------------------- files.log

/// One row of files.log (Zeek `Files::Info`). The hash columns are present
/// only when hashing is configured (`hashes` is `Some`), as in Zeek when the
/// hash analyzers are loaded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileRecord {
    pub ts: Timestamp,
    pub fuid: String,
    pub uid: Option<String>,
    pub id: Option<ConnId>,
    /// `SMTP` or `POP3`.
    pub source: Option<&'static str>,
    pub depth: u64,
    /// Analyzers attached (`MD5`, `SHA1`, `SHA256`, `EXTRACT`...).
    pub analyzers: Vec<Bytes>,
    pub mime_type: Option<Bytes>,
    pub filename: Option<Bytes>,
    pub duration: Interval,
    pub local_orig: Option<bool>,
    pub is_orig: Option<bool>,
    pub seen_bytes: u64,
    pub total_bytes: Option<u64>,
    pub missing_bytes: u64,
    pub overflow_bytes: u64,
    pub timedout: bool,
    pub parent_fuid: Option<String>,
    /// Hex digests (`md5`, `sha1`, `sha256`), each `None` when not computed.
    pub hashes: Option<FileHashes>,
}

/// The hash columns of files.log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileHashes {
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

static FILE_FIELDS: [FieldDef; 27] = [
    f("ts", "time"),
    f("fuid", "string"),
    f("uid", "string"),
    f("id.orig_h", "addr"),
    f("id.orig_p", "port"),
    f("id.resp_h", "addr"),
    f("id.resp_p", "port"),
    f("source", "string"),
    f("depth", "count"),
    f("analyzers", "set[string]"),
    f("mime_type", "string"),
    f("filename", "string"),
    f("duration", "interval"),
    f("local_orig", "bool"),
    f("is_orig", "bool"),
    f("seen_bytes", "count"),
    f("total_bytes", "count"),
    f("missing_bytes", "count"),
    f("overflow_bytes", "count"),
    f("timedout", "bool"),
    f("parent_fuid", "string"),
    f("md5", "string"),
    f("sha1", "string"),
    f("sha256", "string"),
    // Zeek's base/files/extract columns, always there in Zeek 8's
    // files.log; mailtap extracts messages, not files: unset.
    f("extracted", "string"),
    f("extracted_cutoff", "bool"),
    f("extracted_size", "count"),
];

impl ZeekRecord for FileRecord {
    fn path(&self) -> &'static str {
        "files"
    }
    fn fields(&self) -> &'static [FieldDef] {
        if self.hashes.is_some() {
            &FILE_FIELDS
        } else {
            &FILE_FIELDS[..21]
        }
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        out(Value::Str(self.fuid.as_bytes()));
        match &self.uid {
            Some(u) => out(Value::Str(u.as_bytes())),
            None => out(Value::Unset),
        }
        match &self.id {
            Some(id) => id_values(id, out),
            None => (0..4).for_each(|_| out(Value::Unset)),
        }
        match self.source {
            Some(s) => out(Value::Str(s.as_bytes())),
            None => out(Value::Unset),
        }
        out(Value::Count(self.depth));
        out(Value::StrSet(&self.analyzers));
        out(Value::opt_str(&self.mime_type));
        out(Value::opt_str(&self.filename));
        out(Value::Interval(self.duration));
        out(self.local_orig.map(Value::Bool).unwrap_or(Value::Unset));
        out(self.is_orig.map(Value::Bool).unwrap_or(Value::Unset));
        out(Value::Count(self.seen_bytes));
        out(Value::opt_count(self.total_bytes));
        out(Value::Count(self.missing_bytes));
        out(Value::Count(self.overflow_bytes));
        out(Value::Bool(self.timedout));
        match &self.parent_fuid {
            Some(p) => out(Value::Str(p.as_bytes())),
            None => out(Value::Unset),
        }
        if let Some(h) = &self.hashes {
            for v in [&h.md5, &h.sha1, &h.sha256] {
                match v {
                    Some(x) => out(Value::Str(x.as_bytes())),
                    None => out(Value::Unset),
                }
            }
            (0..3).for_each(|_| out(Value::Unset));
        }
    }
}
