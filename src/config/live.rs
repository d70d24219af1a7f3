//! The `[live]` section: `mailtap live` rings, buffers, batching and
//! steering, and their mapping to the capture crate's settings. Only in
//! builds with the `live` feature; without it the section is kept as
//! written (see `super::Live`).

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

// Enum-like settings are enums, so that a bad value fails deserialization
// (`mailtap config check` and startup) with serde's "unknown variant `x`,
// expected one of ..." after the key: the accepted values are listed.

/// `live.xdp_busy_poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusyPollSetting {
    #[serde(alias = "false")]
    Off,
    Auto,
    #[serde(alias = "true")]
    On,
}

/// `live.afpacket_fanout`: the AF_PACKET fanout mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FanoutSetting {
    /// The kernel's symmetric flow hash.
    Hash,
    /// The NIC's queue mapping.
    Qm,
    /// The receiving CPU.
    Cpu,
}

/// `live.xdp_steer`: which TCP the XDP program sends to mailtap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpSteer {
    /// All TCP when `dpd.enabled`, else the mail ports.
    Auto,
    /// The smtp, pop3, imap and ace ports; everything else stays with the host.
    #[serde(alias = "mail_ports")]
    MailPorts,
    #[serde(alias = "all_tcp")]
    AllTcp,
}

/// `live.xdp_host_services`: AF_XDP on an interface where the host itself
/// listens on a steered port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostServices {
    /// An error naming the listeners.
    Refuse,
    /// A warning.
    Allow,
}

/// `live.shard_by`: which shard owns a packet ([`mailtap_engine::ShardBy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShardBySetting {
    Auto,
    Queue,
    #[serde(alias = "flow_hash")]
    FlowHash,
}

/// `live.collector_overflow`: what a worker does when its backlog is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollectorOverflow {
    /// Shed records by class and go on reading packets.
    Drop,
    /// Wait for the collector (the kernel's ring then drops packets).
    Block,
}

/// `live.bypass`: the kernel bypass mode ([`mailtap_engine::LiveBypass`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BypassSetting {
    Auto,
    Drop,
    Pass,
    Off,
}

/// `mailtap live` rings, buffers and batching (docs/operations.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Live {
    /// AF_XDP: UMEM frames per queue.
    pub xdp_frame_count: u32,
    /// AF_XDP: bytes per UMEM frame (2048 or 4096).
    pub xdp_frame_size: u32,
    /// AF_XDP: RX ring entries per socket (power of two).
    pub xdp_rx_ring: u32,
    /// AF_XDP: fill ring entries per UMEM (power of two).
    pub xdp_fill_ring: u32,
    /// AF_XDP: back the UMEM with huge pages.
    pub xdp_huge_pages: bool,
    /// AF_XDP busy polling: off, auto (when the kernel allows it), on
    /// (fail when it does not).
    pub xdp_busy_poll: BusyPollSetting,
    /// AF_XDP: SO_BUSY_POLL microseconds.
    pub xdp_busy_poll_usecs: u32,
    /// AF_XDP: SO_BUSY_POLL_BUDGET packets.
    pub xdp_busy_poll_budget: u32,
    /// AF_PACKET: bytes per TPACKET_V3 block (multiple of the page size, power of two).
    pub afpacket_block_size: u32,
    /// AF_PACKET: blocks per ring.
    pub afpacket_block_count: u32,
    /// AF_PACKET: frame size hint.
    pub afpacket_frame_size: u32,
    /// AF_PACKET: milliseconds before a partly filled block is handed over.
    pub afpacket_block_timeout_ms: u32,
    /// AF_PACKET: bytes kept of each packet.
    pub afpacket_snaplen: u32,
    /// AF_PACKET: fanout mode: hash (kernel's symmetric flow hash), qm (NIC queue), cpu.
    pub afpacket_fanout: FanoutSetting,
    /// AF_PACKET: put the interface in promiscuous mode.
    pub afpacket_promiscuous: bool,
    /// Which TCP the XDP program sends to mailtap: auto (all TCP when
    /// dpd.enabled, else mail ports), mail-ports (the smtp/pop3/imap/ace
    /// ports; everything else stays with the host), all-tcp.
    pub xdp_steer: XdpSteer,
    /// AF_XDP on an interface where the host itself listens on a steered
    /// port (its mail services would receive nothing): refuse (default,
    /// an error naming the listeners) or allow (a warning).
    pub xdp_host_services: HostServices,
    /// Which shard owns a packet: auto, queue (trust the capture to keep
    /// flows together), flow-hash (mailtap's symmetric hash; always right).
    pub shard_by: ShardBySetting,
    /// Packets taken from a ring per batch.
    pub batch_packets: usize,
    /// Bytes per handoff buffer (packets moved to another shard).
    pub handoff_buffer_bytes: usize,
    /// Handoff buffers per worker; when all are in flight a worker waits
    /// up to 30 ms for one, then drops the packet and counts it.
    pub handoff_buffers: usize,
    /// Record batches a worker keeps while the collector is behind.
    pub record_backlog: usize,
    /// What a worker does when its backlog is full: "drop" (shed records
    /// by class, least valuable first, count them and go on reading
    /// packets) or "block" (wait; the kernel's ring then fills and drops
    /// packets).
    pub collector_overflow: CollectorOverflow,
    /// Kernel bypass of connections whose TLS handshake is over: auto
    /// (drop on an interface without addresses, i.e. a mirror or tap port;
    /// pass to the host on one with addresses), drop, pass, off.
    pub bypass: BypassSetting,
    /// Connections the kernel's bypass map holds (about 304 bytes of
    /// kernel memory each); when it is full, connections are bypassed in
    /// user space only.
    pub bypass_connections: u32,
}

impl Default for Live {
    fn default() -> Self {
        let x = mailtap_capture::afxdp::XdpQueueConfig::default();
        let p = mailtap_capture::afpacket::PacketRingConfig::default();
        Live {
            xdp_frame_count: x.frame_count,
            xdp_frame_size: x.frame_size,
            xdp_rx_ring: x.rx_ring,
            xdp_fill_ring: x.fill_ring,
            xdp_huge_pages: x.huge_pages,
            xdp_busy_poll: match x.busy_poll {
                mailtap_capture::afxdp::BusyPoll::Off => BusyPollSetting::Off,
                mailtap_capture::afxdp::BusyPoll::Auto => BusyPollSetting::Auto,
                mailtap_capture::afxdp::BusyPoll::On => BusyPollSetting::On,
            },
            xdp_busy_poll_usecs: x.busy_poll_usecs,
            xdp_busy_poll_budget: x.busy_poll_budget,
            afpacket_block_size: p.block_size,
            afpacket_block_count: p.block_count,
            afpacket_frame_size: p.frame_size,
            afpacket_block_timeout_ms: p.block_timeout_ms,
            afpacket_snaplen: p.snaplen,
            afpacket_fanout: FanoutSetting::Hash,
            afpacket_promiscuous: p.promiscuous,
            xdp_steer: XdpSteer::Auto,
            xdp_host_services: HostServices::Refuse,
            shard_by: ShardBySetting::Auto,
            batch_packets: 256,
            handoff_buffer_bytes: 256 << 10,
            handoff_buffers: 32,
            record_backlog: 256,
            collector_overflow: CollectorOverflow::Drop,
            bypass: BypassSetting::Auto,
            bypass_connections: 65_536,
        }
    }
}

impl Live {
    /// The AF_XDP queue settings (zero-copy comes from the command line).
    pub fn xdp(
        &self,
        zero_copy: mailtap_capture::afxdp::ZeroCopy,
    ) -> mailtap_capture::afxdp::XdpQueueConfig {
        mailtap_capture::afxdp::XdpQueueConfig {
            frame_count: self.xdp_frame_count,
            frame_size: self.xdp_frame_size,
            rx_ring: self.xdp_rx_ring,
            fill_ring: self.xdp_fill_ring,
            zero_copy,
            huge_pages: self.xdp_huge_pages,
            busy_poll: self.xdp_busy_poll(),
            busy_poll_usecs: self.xdp_busy_poll_usecs,
            busy_poll_budget: self.xdp_busy_poll_budget,
        }
    }

    pub fn xdp_busy_poll(&self) -> mailtap_capture::afxdp::BusyPoll {
        use mailtap_capture::afxdp::BusyPoll;
        match self.xdp_busy_poll {
            BusyPollSetting::Off => BusyPoll::Off,
            BusyPollSetting::Auto => BusyPoll::Auto,
            BusyPollSetting::On => BusyPoll::On,
        }
    }

    /// The AF_PACKET ring settings (the fanout group is the engine's).
    pub fn ring(&self) -> mailtap_capture::afpacket::PacketRingConfig {
        mailtap_capture::afpacket::PacketRingConfig {
            block_size: self.afpacket_block_size,
            block_count: self.afpacket_block_count,
            frame_size: self.afpacket_frame_size,
            block_timeout_ms: self.afpacket_block_timeout_ms,
            snaplen: self.afpacket_snaplen,
            fanout: None,
            promiscuous: self.afpacket_promiscuous,
        }
    }

    pub fn fanout(&self) -> mailtap_capture::afpacket::FanoutMode {
        use mailtap_capture::afpacket::FanoutMode;
        match self.afpacket_fanout {
            FanoutSetting::Hash => FanoutMode::Hash,
            FanoutSetting::Qm => FanoutMode::QueueMapping,
            FanoutSetting::Cpu => FanoutMode::Cpu,
        }
    }

    pub fn shard_by(&self) -> mailtap_engine::ShardBy {
        use mailtap_engine::ShardBy;
        match self.shard_by {
            ShardBySetting::Auto => ShardBy::Auto,
            ShardBySetting::Queue => ShardBy::Queue,
            ShardBySetting::FlowHash => ShardBy::FlowHash,
        }
    }

    /// Whether the XDP program steers all TCP (None: follow dpd.enabled).
    pub fn xdp_all_tcp(&self) -> Option<bool> {
        match self.xdp_steer {
            XdpSteer::Auto => None,
            XdpSteer::MailPorts => Some(false),
            XdpSteer::AllTcp => Some(true),
        }
    }

    /// Whether AF_XDP may take steered ports from the host's own services.
    pub fn xdp_host_services_allowed(&self) -> bool {
        self.xdp_host_services == HostServices::Allow
    }

    /// True when workers wait for the collector instead of dropping.
    pub fn block_on_collector(&self) -> bool {
        self.collector_overflow == CollectorOverflow::Block
    }

    /// The kernel bypass mode.
    pub fn bypass(&self) -> mailtap_engine::LiveBypass {
        use mailtap_engine::LiveBypass;
        match self.bypass {
            BypassSetting::Auto => LiveBypass::Auto,
            BypassSetting::Drop => LiveBypass::Drop,
            BypassSetting::Pass => LiveBypass::Pass,
            BypassSetting::Off => LiveBypass::Off,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        let max = mailtap_capture::bypass::MAX_BYPASS_CONNECTIONS;
        if self.bypass_connections == 0 || self.bypass_connections > max {
            bail!("configuration: live.bypass_connections must be between 1 and {max}");
        }
        if self.record_backlog == 0 || self.record_backlog > 1 << 20 {
            bail!("configuration: live.record_backlog must be between 1 and 1048576");
        }
        self.xdp(mailtap_capture::afxdp::ZeroCopy::Auto)
            .validate()
            .map_err(|e| anyhow!("configuration: {}", e.replace("capture.xdp_", "live.xdp_")))?;
        self.ring()
            .validate()
            .map_err(|e| anyhow!("configuration: live.afpacket_{e}"))?;
        if self.batch_packets == 0 || self.batch_packets > 65536 {
            bail!("configuration: live.batch_packets must be between 1 and 65536");
        }
        if self.handoff_buffer_bytes < 65_600 || self.handoff_buffer_bytes > 64 << 20 {
            bail!("configuration: live.handoff_buffer_bytes must be between 65600 and 67108864");
        }
        if self.handoff_buffers == 0 || self.handoff_buffers > 4096 {
            bail!("configuration: live.handoff_buffers must be between 1 and 4096");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(sets: &[&str]) -> Result<Config> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(None, &sets)
    }

    fn err(sets: &[&str]) -> String {
        format!("{:#}", load(sets).unwrap_err())
    }

    #[test]
    fn live_defaults_are_the_capture_crates() {
        let c = load(&[]).unwrap();
        let x = c.live.xdp(mailtap_capture::afxdp::ZeroCopy::Auto);
        let d = mailtap_capture::afxdp::XdpQueueConfig::default();
        assert_eq!(
            (x.frame_count, x.frame_size, x.rx_ring, x.fill_ring),
            (d.frame_count, d.frame_size, d.rx_ring, d.fill_ring)
        );
        assert_eq!(
            (x.rx_ring, x.fill_ring, x.frame_count),
            (65536, 65536, 65536)
        );
        assert_eq!(x.busy_poll, mailtap_capture::afxdp::BusyPoll::Off);
        assert_eq!(c.live.xdp_busy_poll, BusyPollSetting::Off);
        assert_eq!((x.busy_poll_usecs, x.busy_poll_budget), (20, 64));
        let r = c.live.ring();
        assert_eq!((r.block_size, r.block_count), (1 << 20, 64));
    }

    #[test]
    fn live_xdp_keys_are_validated_by_name() {
        for (set, key) in [
            ("live.xdp_busy_poll=sometimes", "live.xdp_busy_poll"),
            ("live.xdp_busy_poll_usecs=0", "live.xdp_busy_poll_usecs"),
            (
                "live.xdp_busy_poll_budget=100000",
                "live.xdp_busy_poll_budget",
            ),
            ("live.xdp_rx_ring=50000", "live.xdp_rx_ring"),
            ("live.xdp_fill_ring=3", "live.xdp_fill_ring"),
            ("live.xdp_frame_count=1024", "live.xdp_frame_count"),
            ("live.xdp_frame_size=3000", "live.xdp_frame_size"),
            ("live.xdp_host_services=yes", "live.xdp_host_services"),
        ] {
            let e = err(&[set]);
            assert!(e.contains(key), "--set {set}: {e}");
            assert!(!e.contains("capture.xdp_"), "--set {set}: {e}");
        }
        // A smaller fill ring needs fewer frames.
        load(&[
            "live.xdp_fill_ring=2048",
            "live.xdp_rx_ring=2048",
            "live.xdp_frame_count=4096",
        ])
        .unwrap();
        // But the default fill ring needs the default frames.
        assert!(err(&["live.xdp_frame_count=4096"]).contains("live.xdp_fill_ring"));
    }

    #[test]
    fn live_busy_poll_values() {
        use mailtap_capture::afxdp::{BusyPoll, ZeroCopy};
        for (v, want) in [
            ("off", BusyPoll::Off),
            ("auto", BusyPoll::Auto),
            ("on", BusyPoll::On),
        ] {
            let c = load(&[
                &format!("live.xdp_busy_poll={v}"),
                "live.xdp_busy_poll_usecs=50",
            ])
            .unwrap();
            let x = c.live.xdp(ZeroCopy::Off);
            assert_eq!((x.busy_poll, x.busy_poll_usecs), (want, 50), "{v}");
        }
    }
}
