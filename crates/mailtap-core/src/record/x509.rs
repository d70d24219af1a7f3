//! x509.log (Zeek's `X509::Info`).

use super::*;

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

zeek_record! {
    impl ZeekRecord for X509Record as r {
        path: "x509";
        "ts": "time" => Value::Time(r.ts),
        "fingerprint": "string" => Value::Str(&r.fingerprint),
        "certificate.version": "count" => Value::Count(r.version),
        "certificate.serial": "string" => Value::Str(&r.serial),
        "certificate.subject": "string" => Value::Str(&r.subject),
        "certificate.issuer": "string" => Value::Str(&r.issuer),
        "certificate.not_valid_before": "time" => Value::Seconds(r.not_valid_before),
        "certificate.not_valid_after": "time" => Value::Seconds(r.not_valid_after),
        "certificate.key_alg": "string" => Value::Str(&r.key_alg),
        "certificate.sig_alg": "string" => Value::Str(&r.sig_alg),
        "certificate.key_type": "string" => Value::opt_str(&r.key_type),
        "certificate.key_length": "count" => Value::opt_count(r.key_length),
        "certificate.exponent": "string" => Value::opt_str(&r.exponent),
        "certificate.curve": "string" => Value::opt_str(&r.curve),
        "san.dns": "vector[string]" => Value::opt_vec(&r.san_dns),
        "san.uri": "vector[string]" => Value::opt_vec(&r.san_uri),
        "san.email": "vector[string]" => Value::opt_vec(&r.san_email),
        "san.ip": "vector[addr]" => Value::or_unset(r.san_ip.as_deref().map(Value::AddrVec)),
        "basic_constraints.ca": "bool" => Value::or_unset(r.basic_constraints_ca.map(Value::Bool)),
        "basic_constraints.path_len": "count" => Value::opt_count(r.basic_constraints_path_len),
        "host_cert": "bool" => Value::Bool(r.host_cert),
        "client_cert": "bool" => Value::Bool(r.client_cert),
    }
}
