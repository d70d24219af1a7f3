//! ssl.log (Zeek's `SSL::Info`).

use super::*;

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

zeek_record! {
    impl ZeekRecord for SslRecord as r {
        path: "ssl";
        "ts": "time" => Value::Time(r.ts),
        "uid": "string" => Value::Str(r.uid.as_bytes()),
        "id.orig_h": "addr" => orig_h(&r.id),
        "id.orig_p": "port" => orig_p(&r.id),
        "id.resp_h": "addr" => resp_h(&r.id),
        "id.resp_p": "port" => resp_p(&r.id),
        "version": "string" => Value::opt_str(&r.version),
        "cipher": "string" => Value::opt_str(&r.cipher),
        "curve": "string" => Value::opt_str(&r.curve),
        "server_name": "string" => Value::opt_str(&r.server_name),
        "resumed": "bool" => Value::Bool(r.resumed),
        "last_alert": "string" => Value::opt_str(&r.last_alert),
        "next_protocol": "string" => Value::opt_str(&r.next_protocol),
        "established": "bool" => Value::Bool(r.established),
        "ssl_history": "string" => Value::Str(&r.ssl_history),
        "cert_chain_fps": "vector[string]" => Value::opt_vec(&r.cert_chain_fps),
        "client_cert_chain_fps": "vector[string]" => Value::opt_vec(&r.client_cert_chain_fps),
        "sni_matches_cert": "bool" => Value::or_unset(r.sni_matches_cert.map(Value::Bool)),
        "ja4": "string" => Value::opt_str(&r.ja4),
        "ja4s": "string" => Value::opt_str(&r.ja4s),
    }
}
