//! The flow layer's settings (`[flow]`).

use serde::{Deserialize, Serialize};

/// Flow-layer tunables (`[flow]` in the configuration). Limits given here
/// are per shard; the engine divides the user's totals among shards.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Most connections tracked at once; the least recently created idle
    /// one is evicted (and logged) to make room.
    pub max_flows: usize,
    /// Seconds without packets before a TCP connection is expired (Zeek's
    /// `tcp_inactivity_timeout`).
    pub tcp_inactivity_timeout: f64,
    /// Seconds a closed or reset connection is kept to absorb its last
    /// packets (Zeek's `tcp_close_delay`).
    pub tcp_close_delay: f64,
    /// Seconds a connection attempt (a SYN its responder never answered)
    /// is kept (Zeek's `tcp_attempt_delay`): a SYN flood's half-open
    /// connections go after this, not after the inactivity timeout.
    pub tcp_attempt_delay: f64,
    /// Out-of-order bytes buffered per direction of one connection.
    pub reassembly_stream_limit: usize,
    /// Out-of-order bytes buffered in all connections of the shard.
    pub reassembly_memory: usize,
    /// Bytes of input the shard may buffer in all: reassembly, partial
    /// lines and MIME headers together ([`mailtap_core::budget`]).
    pub buffer_memory: usize,
    /// Bytes of the first payload kept for dynamic protocol detection
    /// (Zeek's `dpd_buffer_size`).
    pub dpd_buffer_size: usize,
    /// Stop analysing a connection's payload once its analyzer has learned
    /// all it can (a TLS handshake is over, or STARTTLS with
    /// `ssl.analyze = false`): the payload is then neither reassembled nor
    /// delivered, and live capture asks the kernel to count the
    /// connection's packets instead of handing them over (see
    /// [`crate::bypass`]).
    pub bypass: bool,
    /// Analyse connections picked up with no handshake at all (the
    /// capture began mid-connection): the analyzer is attached by port or
    /// detection and told to resynchronise ([`TcpAnalyzer::start_midstream`]).
    /// A deliberate difference from Zeek, which skips such connections
    /// (`false` gives Zeek's behaviour). Connections whose SYN was lost but
    /// whose SYN-ACK was seen are always analysed in full, as in Zeek.
    pub analyze_partial: bool,
    /// Ports that are probably a server's (Zeek's `likely_server_ports`):
    /// a connection picked up without its SYN is oriented with the side
    /// using such a port as the responder. Default: the TCP ports the
    /// analyzers of Zeek 8.2.2's default scripts register (POP3 registers
    /// none).
    pub likely_server_ports: Vec<u16>,
}

/// The TCP ports the protocol analyzers loaded by Zeek 8.2.2's default
/// scripts register, which make up its `likely_server_ports` (SMTP 25 and
/// 587, the TLS ports, IMAP 143, ...; POP3 registers no port).
pub const ZEEK_LIKELY_SERVER_PORTS: &[u16] = &[
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614, 631,
    636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269,
    5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
];

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_inactivity_timeout: 300.0,
            tcp_close_delay: 5.0,
            tcp_attempt_delay: 5.0,
            reassembly_stream_limit: 1 << 20,
            reassembly_memory: 512 << 20,
            buffer_memory: 1 << 30,
            dpd_buffer_size: 1024,
            bypass: true,
            analyze_partial: true,
            likely_server_ports: ZEEK_LIKELY_SERVER_PORTS.to_vec(),
        }
    }
}

impl FlowConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_flows == 0 {
            return Err("flow.max_flows must be at least 1".into());
        }
        for (k, v) in [
            ("flow.tcp_inactivity_timeout", self.tcp_inactivity_timeout),
            ("flow.tcp_close_delay", self.tcp_close_delay),
            ("flow.tcp_attempt_delay", self.tcp_attempt_delay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{k} must be a non-negative number of seconds"));
            }
        }
        Ok(())
    }
}
