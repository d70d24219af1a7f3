//! The settings of AF_PACKET rings: the fanout mode and group, ring and
//! block sizes, snap length, and their validation.

use std::fmt;
use std::str::FromStr;

/// How the kernel picks the socket of a fanout group for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// `PACKET_FANOUT_HASH`: the kernel's symmetric flow hash.
    Hash,
    /// `PACKET_FANOUT_QM`: the NIC receive queue the packet came in on.
    QueueMapping,
    /// `PACKET_FANOUT_CPU`: the CPU that processed the packet.
    Cpu,
}

impl FanoutMode {
    pub(super) fn kernel_mode(self) -> u32 {
        match self {
            FanoutMode::Hash => libc::PACKET_FANOUT_HASH,
            FanoutMode::QueueMapping => libc::PACKET_FANOUT_QM,
            FanoutMode::Cpu => libc::PACKET_FANOUT_CPU,
        }
    }
    fn name(self) -> &'static str {
        match self {
            FanoutMode::Hash => "hash",
            FanoutMode::QueueMapping => "qm",
            FanoutMode::Cpu => "cpu",
        }
    }
}

impl fmt::Display for FanoutMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FanoutMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hash" => Ok(FanoutMode::Hash),
            "qm" => Ok(FanoutMode::QueueMapping),
            "cpu" => Ok(FanoutMode::Cpu),
            _ => Err(format!(
                "unknown fanout mode {s:?}: expected \"hash\" (symmetric flow hash), \
                 \"qm\" (NIC queue mapping) or \"cpu\""
            )),
        }
    }
}

/// Membership of a `PACKET_FANOUT` group. All rings of one group must be
/// opened on the same interface with the same mode and `defrag`; the group
/// id is global in the network namespace.
#[derive(Clone, Copy, Debug)]
pub struct Fanout {
    pub group_id: u16,
    pub mode: FanoutMode,
    /// `PACKET_FANOUT_FLAG_DEFRAG`: reassemble IPv4 fragments before hashing.
    pub defrag: bool,
}

/// Geometry and options of one receive ring.
///
/// The default ring (64 blocks of 1 MiB) absorbs a stall of the worker of
/// far more than 50 ms at 1 Gbit/s: a packet takes its length plus 82 bytes
/// (the TPACKET_V3 header and `sockaddr_ll`, the MAC header aligned to 16)
/// rounded up to 8, so a 143-byte frame takes 232 bytes and a 1 MiB block
/// holds 4519 of them; 63 blocks (one may be in the worker's hands) hold
/// 284 k small frames, 371 ms at 1 Gbit/s (767 k frames/s of 143 bytes plus
/// 20 bytes of preamble and gap), and 41 k full-size frames, 506 ms.
/// [`PacketRingConfig::burst_packets`] computes it.
#[derive(Clone, Debug)]
pub struct PacketRingConfig {
    /// Bytes per block (`tp_block_size`): the page size times a power of two.
    pub block_size: u32,
    /// Blocks in the ring (`tp_block_nr`).
    pub block_count: u32,
    /// `tp_frame_size`: only a sizing hint for TPACKET_V3 (packets are
    /// packed back to back); a multiple of 16, at most `block_size`.
    pub frame_size: u32,
    /// `tp_retire_blk_tov`: a block that is not full is handed over after
    /// this many ms. 0 lets the kernel derive it from the link speed.
    pub block_timeout_ms: u32,
    /// Bytes captured per packet; longer packets are truncated and counted
    /// in [`QueueCounters::truncated`]. A packet also cannot exceed what one
    /// block holds (`block_size` minus about 200 bytes of headers).
    pub snaplen: u32,
    pub fanout: Option<Fanout>,
    /// Put the interface in promiscuous mode (`PACKET_MR_PROMISC`) while
    /// the ring is open.
    pub promiscuous: bool,
}

impl Default for PacketRingConfig {
    fn default() -> Self {
        PacketRingConfig {
            block_size: 1 << 20,
            block_count: 64,
            frame_size: 2048,
            block_timeout_ms: 10,
            snaplen: 65535,
            fanout: None,
            promiscuous: true,
        }
    }
}

/// Where the MAC header starts in a TPACKET_V3 packet slot: the 68-byte
/// `TPACKET3_HDRLEN` plus 16 (a 14-byte MAC header counts as 16), aligned
/// to 16, minus the 14-byte MAC header.
const TPACKET3_MAC_OFFSET: u32 = 82;

/// Smallest snap length accepted: enough for Ethernet + IPv4 + TCP headers.
pub const MIN_SNAPLEN: u32 = 64;

/// Room a block keeps for its own header and the packet header in front of
/// the largest packet (48-byte block header, then `tp_mac` is about 80
/// bytes into the packet header); the snap length is clamped to
/// `block_size - BLOCK_OVERHEAD` so that the kernel never has to clamp it.
const BLOCK_OVERHEAD: u32 = 256;

fn page_size() -> u32 {
    u32::try_from(rustix::param::page_size()).unwrap_or(4096)
}

impl PacketRingConfig {
    /// The snap length the ring's filter applies: `snaplen` clamped to
    /// what one block holds. Load a [`SocketBypass`] with this value.
    pub fn effective_snaplen(&self) -> u32 {
        self.snaplen
            .min(self.block_size.saturating_sub(BLOCK_OVERHEAD))
    }

    /// Packets of `frame_len` bytes the ring holds while its worker reads
    /// nothing (all blocks but the one the worker may be reading).
    pub fn burst_packets(&self, frame_len: u32) -> u64 {
        let per_packet =
            u64::from(TPACKET3_MAC_OFFSET + frame_len.min(self.snaplen)).next_multiple_of(8);
        let per_block = (u64::from(self.block_size) - 48) / per_packet;
        per_block * u64::from(self.block_count.saturating_sub(1))
    }

    /// Checks the ring geometry; the error names the bad field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        let page = page_size();
        let bs = self.block_size;
        // page is a power of two, so the mask tests divisibility.
        if bs == 0 || bs & (page - 1) != 0 || !(bs / page).is_power_of_two() {
            return Err(format!(
                "block_size {bs} must be the page size ({page}) times a power of two, \
                 e.g. {} (1 MiB)",
                1u32 << 20
            ));
        }
        if bs > 1 << 30 {
            return Err(format!("block_size {bs} must be at most 1 GiB"));
        }
        if self.block_count == 0 {
            return Err("block_count must be at least 1".into());
        }
        let total = u64::from(bs) * u64::from(self.block_count);
        if total > isize::MAX as u64 {
            return Err(format!(
                "block_count {} times block_size {bs} does not fit in memory",
                self.block_count
            ));
        }
        let min_frame = libc::TPACKET3_HDRLEN as u32;
        let fs = self.frame_size;
        if fs < min_frame || fs & (libc::TPACKET_ALIGNMENT as u32 - 1) != 0 || fs > bs {
            return Err(format!(
                "frame_size {fs} must be a multiple of {} between {} and block_size ({bs})",
                libc::TPACKET_ALIGNMENT,
                min_frame.next_multiple_of(libc::TPACKET_ALIGNMENT as u32)
            ));
        }
        if u64::from(bs / fs) * u64::from(self.block_count) > u64::from(u32::MAX) {
            return Err(format!(
                "frame_size {fs}: (block_size / frame_size) * block_count must fit in 32 bits"
            ));
        }
        if self.snaplen < MIN_SNAPLEN {
            return Err(format!(
                "snaplen {} must be at least {MIN_SNAPLEN} bytes",
                self.snaplen
            ));
        }
        Ok(())
    }
}
