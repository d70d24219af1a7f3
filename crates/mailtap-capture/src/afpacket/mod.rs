//! AF_PACKET TPACKET_V3 receive rings: one mmapped ring per worker thread,
//! optionally joined to a `PACKET_FANOUT` group that spreads the traffic of
//! one interface over several workers.
//!
//! Why TPACKET_V3: the kernel fills variable-sized *blocks* (default 1 MiB)
//! with back-to-back packets and hands a whole block to user space at once,
//! either when it is full or when `tp_retire_blk_tov` ms have passed. A
//! worker wakes up once per block rather than once per packet (V1/V2 have
//! one fixed-size frame per packet and one readiness check per frame), short
//! packets don't waste a full frame, and every packet still carries its own
//! nanosecond timestamp.
//!
//! The receive path (`PacketRing::poll_batch`) reads packets in place from
//! the shared mapping: no allocation, lock, copy or system call per packet.
//! `poll(2)` is called only when the next block is not yet ready, and
//! `PACKET_STATISTICS` is read only from [`PacketRing::counters`].
//!
//! Fanout: [`FanoutMode::Hash`] uses the kernel's symmetric flow hash
//! (`__skb_get_hash_symmetric`), so both directions of a TCP connection land
//! on the same ring; with [`Fanout::defrag`] IPv4 fragments are reassembled
//! before hashing so that they follow their flow. [`FanoutMode::QueueMapping`]
//! follows the NIC's receive queue and is only flow-symmetric when the NIC's
//! RSS hash is (a symmetric Toeplitz key); [`FanoutMode::Cpu`] follows the CPU
//! that received the packet, which has the same caveat.
//!
//! Snap length: a one-instruction classic BPF filter (`ret #snaplen`) makes
//! the kernel copy at most `snaplen` bytes of each packet into the ring;
//! `tp_len` keeps the length on the wire. [`PacketRing::attach_bypass`]
//! replaces it with the eBPF socket filter of [`crate::bypass`], which
//! returns the same snap length and 0 for bypassed packets.

mod config;

pub use config::{Fanout, FanoutMode, PacketRingConfig};

use crate::bypass::SocketBypass;
use crate::{ifindex, CaptureError, QueueCounters, RxPacket};
use mailtap_core::Timestamp;
use std::fmt;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Offset of `hdr.bh1` in `tpacket_block_desc` (after `version` and
/// `offset_to_priv`); the uapi layout has been fixed since Linux 3.2.
const BH1: usize = 8;
const BLOCK_STATUS_OFF: usize = BH1;
const NUM_PKTS_OFF: usize = BH1 + 4;
const OFFSET_TO_FIRST_PKT_OFF: usize = BH1 + 8;
const _: () = assert!(size_of::<libc::tpacket3_hdr>() == 48);
const _: () = assert!(size_of::<libc::tpacket_block_desc>() == 48);

/// One TPACKET_V3 receive ring on one interface. Owned by one worker.
pub struct PacketRing {
    /// The mapping (`block_count * block_size` bytes), unmapped in `Drop`.
    map: NonNull<u8>,
    map_len: usize,
    block_size: usize,
    block_count: usize,
    /// The block the kernel hands over next (it fills them in order).
    next_block: usize,
    /// Closed after the unmap (the kernel complains when a ring socket is
    /// closed while still mapped).
    fd: OwnedFd,
    ifname: String,
    counters: QueueCounters,
    /// The snap length of the classic filter set at open.
    snaplen: u32,
}

// SAFETY: the mapping is owned by this value alone (no other Rust handle to
// it exists), the kernel synchronises through the block status words, and
// nothing in PacketRing is tied to the thread that opened it.
unsafe impl Send for PacketRing {}

impl fmt::Debug for PacketRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketRing")
            .field("ifname", &self.ifname)
            .field("fd", &self.fd.as_raw_fd())
            .field("block_size", &self.block_size)
            .field("block_count", &self.block_count)
            .finish()
    }
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
    what: impl FnOnce() -> String,
) -> Result<(), CaptureError> {
    // SAFETY: val points to a live T of the length we pass; the kernel only
    // reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(CaptureError::last_os(what()));
    }
    Ok(())
}

impl PacketRing {
    /// Opens an AF_PACKET socket with a TPACKET_V3 ring on `ifname`: the
    /// ring is mmapped, the socket bound to the interface (`ETH_P_ALL`),
    /// promiscuous mode requested if configured, and the socket joined to
    /// the fanout group (which the kernel only allows after bind).
    ///
    /// The socket is created with protocol 0 (receives nothing) and only
    /// starts receiving at bind, so no packet of another interface ever
    /// enters the ring. Errors name the interface and the failing step.
    pub fn open(ifname: &str, cfg: &PacketRingConfig) -> Result<Self, CaptureError> {
        cfg.validate().map_err(|e| {
            CaptureError::new(
                format!("AF_PACKET ring config for {ifname}: {e}"),
                io::ErrorKind::InvalidInput.into(),
            )
        })?;
        let idx = ifindex(ifname)?;

        // SAFETY: plain socket(2) call; the result is checked below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(CaptureError::last_os(format!(
                "AF_PACKET socket for {ifname}"
            )));
        }
        // SAFETY: raw is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            || format!("PACKET_VERSION TPACKET_V3 on {ifname}"),
        )?;

        // Snap length as a classic BPF program: `ret #snaplen`. The kernel
        // copies min(packet, return value) bytes. Clamped to what a block
        // holds so the kernel never has to clamp (and log) itself.
        let snaplen = cfg.effective_snaplen();
        let mut insn = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: snaplen,
        }];
        let prog = libc::sock_fprog {
            len: insn.len() as libc::c_ushort,
            filter: insn.as_mut_ptr(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog, || {
            format!("SO_ATTACH_FILTER (snaplen {snaplen}) on {ifname}")
        })?;

        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: (cfg.block_size / cfg.frame_size) * cfg.block_count,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req, || {
            format!(
                "PACKET_RX_RING ({} blocks of {} bytes) on {ifname}",
                cfg.block_count, cfg.block_size
            )
        })?;

        let block_size = cfg.block_size as usize;
        let block_count = cfg.block_count as usize;
        let map_len = block_size * block_count;
        // SAFETY: a fresh shared mapping of the socket's ring, of exactly the
        // size the kernel just allocated; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(CaptureError::last_os(format!(
                "mmap of the {map_len}-byte AF_PACKET ring on {ifname}"
            )));
        }
        // From here on, dropping `ring` unmaps and closes in the right order.
        let ring = PacketRing {
            map: NonNull::new(p.cast()).expect("mmap returned a null mapping"),
            map_len,
            block_size,
            block_count,
            next_block: 0,
            fd,
            ifname: ifname.to_string(),
            counters: QueueCounters::default(),
            snaplen,
        };

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { MaybeUninit::zeroed().assume_init() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = idx as i32;
        // SAFETY: sll is a valid sockaddr_ll and we pass its exact size.
        let rc = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(CaptureError::last_os(format!(
                "bind AF_PACKET socket to {ifname}"
            )));
        }

        if cfg.promiscuous {
            // SAFETY: packet_mreq is plain data; all-zero is a valid value.
            let mut mreq: libc::packet_mreq = unsafe { MaybeUninit::zeroed().assume_init() };
            mreq.mr_ifindex = idx as i32;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(
                &ring.fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
                || format!("PACKET_ADD_MEMBERSHIP promiscuous on {ifname}"),
            )?;
        }

        if let Some(fo) = cfg.fanout {
            let mut type_flags = fo.mode.kernel_mode();
            if fo.defrag {
                type_flags |= libc::PACKET_FANOUT_FLAG_DEFRAG;
            }
            let arg: libc::c_int = (u32::from(fo.group_id) | (type_flags << 16)) as libc::c_int;
            setsockopt(
                &ring.fd,
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &arg,
                || {
                    format!(
                        "join PACKET_FANOUT group {} (mode {}{}) on {ifname} \
                     (all members of a group must share interface, mode and defrag)",
                        fo.group_id,
                        fo.mode,
                        if fo.defrag { ", defrag" } else { "" }
                    )
                },
            )?;
        }

        Ok(ring)
    }

    /// The interface this ring captures on.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The snap length applied to the packets (the config's, clamped to a
    /// block: [`PacketRingConfig::effective_snaplen`]).
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Replaces the ring's classic snap-length filter with the bypass
    /// socket filter (`SO_ATTACH_BPF`, atomic: no packet goes unfiltered).
    /// The filter must have been loaded with this ring's snap length. On
    /// failure the ring keeps its classic filter and works as before.
    pub fn attach_bypass(&self, bypass: &SocketBypass) -> Result<(), CaptureError> {
        if bypass.snaplen() != self.snaplen {
            return Err(CaptureError::new(
                format!(
                    "AF_PACKET ring on {}: attaching the bypass socket filter",
                    self.ifname
                ),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the filter was loaded with snaplen {} but the ring's is {} (PacketRingConfig::effective_snaplen)",
                        bypass.snaplen(),
                        self.snaplen
                    ),
                ),
            ));
        }
        bypass.attach(self.fd.as_fd()).map_err(|e| {
            CaptureError::new(
                format!(
                    "AF_PACKET ring on {}: attaching the bypass socket filter (SO_ATTACH_BPF)",
                    self.ifname
                ),
                e.source,
            )
        })
    }

    /// Pointer to the status word of block `i`.
    #[inline]
    fn block_status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.block_count);
        // SAFETY: i < block_count, so the word lies inside the mapping; it
        // is 4-byte aligned (blocks are page aligned) and lives as long as
        // &self. The kernel writes it concurrently, hence the atomic.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_ptr()
                    .add(i * self.block_size + BLOCK_STATUS_OFF)
                    .cast(),
            )
        }
    }

    #[inline]
    fn block_ready(&self, i: usize) -> bool {
        // Acquire pairs with the kernel's smp_wmb before it sets
        // TP_STATUS_USER: the block's packets are visible after this load.
        self.block_status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Waits at most `timeout` for a block (calling `poll(2)` only when the
    /// next block is not ready yet), then hands every packet of the ready
    /// blocks to `f`, block by block, returning each block to the kernel
    /// right after its packets were handed over. Stops after the block in
    /// which the running total reached `max_packets` (0 is taken as 1: at
    /// most one block), or when no further block is ready. Returns the
    /// number of packets handed over; 0 on timeout or signal.
    ///
    /// Errors: `poll` failures, and a socket error the kernel reports, e.g.
    /// ENODEV when the interface is removed. ENETDOWN (link went down) is
    /// not an error: the socket resumes when the interface comes back up.
    pub fn poll_batch<F: FnMut(RxPacket<'_>)>(
        &mut self,
        max_packets: usize,
        timeout: Duration,
        mut f: F,
    ) -> Result<usize, CaptureError> {
        let max_packets = max_packets.max(1);
        let ready = self.block_ready(self.next_block)
            || (self.wait(timeout)? && self.block_ready(self.next_block));
        if !ready {
            return Ok(0);
        }
        let mut handed = 0usize;
        loop {
            let b = self.next_block;
            handed += self.drain_block(b, &mut f);
            // Release: our reads of the block happen before the kernel may
            // reuse it.
            self.block_status(b)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next_block = if b + 1 == self.block_count { 0 } else { b + 1 };
            if handed >= max_packets || !self.block_ready(self.next_block) {
                return Ok(handed);
            }
        }
    }

    /// Hands the packets of user-owned block `b` to `f`; returns how many.
    /// Every offset the kernel wrote is bounds-checked against the block: a
    /// malformed entry ends the block and is counted in `invalid_descs`.
    #[inline]
    fn drain_block<F: FnMut(RxPacket<'_>)>(&mut self, b: usize, f: &mut F) -> usize {
        let bs = self.block_size;
        // SAFETY: b < block_count, so the block lies inside the mapping.
        let block = unsafe { self.map.as_ptr().add(b * bs) };
        // SAFETY: the block is user-owned (TP_STATUS_USER seen with Acquire),
        // so the kernel does not write it until we hand it back; both words
        // are within the 48-byte block header.
        let (num_pkts, first) = unsafe {
            (
                block.add(NUM_PKTS_OFF).cast::<u32>().read_volatile(),
                block
                    .add(OFFSET_TO_FIRST_PKT_OFF)
                    .cast::<u32>()
                    .read_volatile(),
            )
        };
        const HDR: usize = size_of::<libc::tpacket3_hdr>();
        let mut off = first as usize;
        let mut n = 0usize;
        for i in 0..num_pkts {
            if off < size_of::<libc::tpacket_block_desc>() || off > bs - HDR {
                self.counters.invalid_descs += 1;
                break;
            }
            // SAFETY: off + HDR <= bs, so the header lies inside the block;
            // read_unaligned copes with any offset the kernel might write.
            let h = unsafe { block.add(off).cast::<libc::tpacket3_hdr>().read_unaligned() };
            let start = off + h.tp_mac as usize;
            let len = h.tp_snaplen as usize;
            if start > bs || len > bs - start {
                self.counters.invalid_descs += 1;
                break;
            }
            // SAFETY: [start, start + len) lies inside the user-owned block,
            // which stays mapped and unwritten by the kernel until we return
            // it after this loop; the closure cannot keep the borrow.
            let data = unsafe { std::slice::from_raw_parts(block.add(start), len) };
            // tp_status bits: TP_STATUS_LOSING only says that drops happened
            // (counted by PACKET_STATISTICS); TP_STATUS_COPY is a V1/V2 thing
            // (V3 clamps instead), a short capture shows as truncated below;
            // TP_STATUS_CSUMNOTREADY (outgoing packets with checksum offload)
            // means the L4 checksum in `data` is not filled in, which the
            // analyzers never verify; with TP_STATUS_VLAN_VALID the NIC or
            // kernel stripped the 802.1Q tag (in hv1.tp_vlan_tci) and `data`
            // is the untagged frame, which is what the decoders want anyway.
            let wire_len = h.tp_len.max(h.tp_snaplen);
            if (len as u64) < u64::from(wire_len) {
                self.counters.truncated += 1;
            }
            self.counters.packets += 1;
            self.counters.bytes += len as u64;
            n += 1;
            f(RxPacket {
                ts: Timestamp::from_secs_nanos(i64::from(h.tp_sec), i64::from(h.tp_nsec)),
                data,
                wire_len,
            });
            if i + 1 < num_pkts {
                if h.tp_next_offset == 0 {
                    self.counters.invalid_descs += 1;
                    break;
                }
                off = match off.checked_add(h.tp_next_offset as usize) {
                    Some(o) => o,
                    None => {
                        self.counters.invalid_descs += 1;
                        break;
                    }
                };
            }
        }
        n
    }

    /// Waits for the socket to become readable. Returns false on timeout,
    /// EINTR or a transient socket error.
    #[cold]
    fn wait(&mut self, timeout: Duration) -> Result<bool, CaptureError> {
        // Round up so that a sub-millisecond timeout does not spin.
        let ms = timeout
            .as_nanos()
            .div_ceil(1_000_000)
            .min(libc::c_int::MAX as u128) as libc::c_int;
        let timeout = rustix::time::Timespec {
            tv_sec: i64::from(ms / 1000),
            tv_nsec: i64::from(ms % 1000) * 1_000_000,
        };
        let mut pfd = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::IN | rustix::event::PollFlags::RDNORM,
        )];
        let n = match rustix::event::poll(&mut pfd, Some(&timeout)) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => return Ok(false),
            Err(e) => {
                return Err(CaptureError::new(
                    format!("poll on the AF_PACKET ring of {}", self.ifname),
                    e.into(),
                ))
            }
        };
        if n == 0 {
            return Ok(false);
        }
        let revents = pfd[0].revents();
        if revents.contains(rustix::event::PollFlags::NVAL) {
            return Err(CaptureError::new(
                format!("poll on the AF_PACKET ring of {}", self.ifname),
                io::Error::from_raw_os_error(libc::EBADF),
            ));
        }
        if revents.contains(rustix::event::PollFlags::ERR) {
            // Reading SO_ERROR clears it.
            let err = match rustix::net::sockopt::socket_error(&self.fd) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => e.raw_os_error(),
                Err(e) => {
                    return Err(CaptureError::new(
                        format!("SO_ERROR on the AF_PACKET ring of {}", self.ifname),
                        e.into(),
                    ))
                }
            };
            match err {
                0 => {}
                libc::ENETDOWN => {
                    tracing::warn!(
                        interface = %self.ifname,
                        "interface went down; capture resumes when it is up again"
                    );
                    return Ok(false);
                }
                e => {
                    return Err(CaptureError::new(
                        format!("AF_PACKET ring on {}", self.ifname),
                        io::Error::from_raw_os_error(e),
                    ))
                }
            }
        }
        Ok(true)
    }

    /// Cumulative counters since open. `packets`, `bytes`, `truncated` and
    /// `invalid_descs` are counted here; `kernel_drops` (`tp_drops`) and
    /// `ring_full` (`tp_freeze_q_cnt`, times the kernel found the next
    /// block still in user space) come from one `PACKET_STATISTICS` read,
    /// which resets the kernel's counters, so they are accumulated.
    pub fn counters(&mut self) -> QueueCounters {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st and len are valid for writes of their sizes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.counters.kernel_drops += u64::from(st.tp_drops);
            self.counters.ring_full += u64::from(st.tp_freeze_q_cnt);
        } else {
            tracing::warn!(
                interface = %self.ifname,
                error = %io::Error::last_os_error(),
                "PACKET_STATISTICS failed; kernel drop counters not updated"
            );
        }
        self.counters
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: map/map_len are exactly the mapping made in open(), and no
        // borrow of it outlives &mut self. The descriptor closes afterwards
        // (field drop), once the ring is no longer mapped.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_mode_parses() {
        assert_eq!("hash".parse::<FanoutMode>(), Ok(FanoutMode::Hash));
        assert_eq!("QM".parse::<FanoutMode>(), Ok(FanoutMode::QueueMapping));
        assert_eq!("cpu".parse::<FanoutMode>(), Ok(FanoutMode::Cpu));
        let e = "lb".parse::<FanoutMode>().unwrap_err();
        assert!(
            e.contains("hash") && e.contains("qm") && e.contains("cpu"),
            "{e}"
        );
    }

    #[test]
    fn default_config_is_valid() {
        PacketRingConfig::default().validate().unwrap();
    }

    #[test]
    fn default_ring_holds_50ms_at_1g() {
        let c = PacketRingConfig::default();
        // 1 Gbit/s with 20 bytes of preamble and gap per frame, 50 ms.
        let need = |frame: u32| (1e9 / (f64::from(frame + 20) * 8.0) * 0.050).ceil() as u64;
        assert_eq!(need(143), 38_344);
        assert_eq!(c.burst_packets(143), 63 * 4519);
        for frame in [64, 143, 576, 1514] {
            assert!(
                c.burst_packets(frame) >= need(frame),
                "{frame}-byte frames: {} < {}",
                c.burst_packets(frame),
                need(frame)
            );
        }
    }
}
