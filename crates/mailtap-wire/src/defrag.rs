//! IPv4 / IPv6 fragment reassembly with bounded memory.
//!
//! Datagrams are keyed by (source, destination, identification, protocol)
//! for IPv4 and (source, destination, identification) for IPv6.
//!
//! Policies:
//! * **Overlaps: first-arrived bytes win.** Bytes already held for a
//!   datagram are never overwritten; a later fragment only fills gaps. When
//!   a later fragment's overlapping bytes *differ* from those held, the
//!   `overlaps` counter is incremented (once per fragment) — this is the
//!   fragment-inconsistency signal. Exact duplicates are silently absorbed.
//! * The IPv4 header (incl. options) and the IPv6 unfragmentable part are
//!   taken from the offset-0 fragment (the first such fragment to arrive).
//! * A datagram whose reassembled IP packet would exceed 65535 bytes (IPv4
//!   total length or IPv6 payload length), a non-final fragment whose length
//!   is not a multiple of 8, conflicting final lengths, or data beyond the
//!   final length are `malformed`: the datagram is dropped.
//! * Timeouts run from the first fragment's arrival ([`Defragmenter::expire`],
//!   and lazily when a fragment arrives for an expired datagram).
//! * Bounds: at most `max_datagrams` pending datagrams (the oldest is evicted,
//!   `evicted_table_full`), at most `max_bytes` of buffered header+data (the
//!   oldest datagrams are evicted, or the current one dropped if it is itself
//!   the oldest, `dropped_over_memory`), at most [`MAX_RANGES`] disjoint
//!   received ranges per datagram (`malformed`). Freed buffers are pooled so
//!   the steady state does not allocate.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use mailtap_core::{Interval, Timestamp};

use crate::decode::{checksum_fold, checksum_sum, FragmentRef, IpVersion};

/// Maximum number of disjoint received byte ranges tracked per datagram.
pub const MAX_RANGES: usize = 128;
const POOL_MAX: usize = 64;
const POOL_MAX_CAPACITY: usize = 128 * 1024;

/// Reassembly limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragConfig {
    /// Maximum pending datagrams (default 4096).
    pub max_datagrams: usize,
    /// Maximum buffered bytes over all pending datagrams (default 16 MiB).
    pub max_bytes: usize,
    /// Time from the first fragment after which a datagram is dropped (default 30 s).
    pub timeout: Interval,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            max_datagrams: 4096,
            max_bytes: 16 << 20,
            timeout: Interval(30_000_000_000),
        }
    }
}

/// Reassembly statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragCounters {
    /// Fragments passed to [`Defragmenter::push`].
    pub fragments: u64,
    /// Datagrams completed.
    pub reassembled: u64,
    /// Datagrams dropped because their timeout passed.
    pub timed_out: u64,
    /// Datagrams evicted because the table was full.
    pub evicted_table_full: u64,
    /// Datagrams dropped to stay under `max_bytes`.
    pub dropped_over_memory: u64,
    /// Fragments whose overlapping bytes differed from bytes already held.
    pub overlaps: u64,
    /// Malformed fragments or datagrams (oversized, bad lengths, too many holes).
    pub malformed: u64,
    /// Gauge: datagrams currently pending.
    pub pending_datagrams: u64,
    /// Gauge: bytes currently buffered.
    pub pending_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

#[derive(Debug, Default)]
struct Datagram {
    created: Timestamp,
    gen: u64,
    version: Option<IpVersion>,
    /// Header of the offset-0 fragment; empty until it arrives.
    header: Vec<u8>,
    nh_index: usize,
    protocol: u8,
    /// Fragmentable part; `len()` = highest end seen.
    data: Vec<u8>,
    /// Received `[start, end)` ranges, sorted, disjoint, non-adjacent.
    ranges: Vec<(u32, u32)>,
    /// Length of the fragmentable part, once the final fragment arrived.
    total: Option<u32>,
}

impl Datagram {
    fn mem(&self) -> usize {
        self.header.len() + self.data.len()
    }
}

/// Bounded IP fragment reassembler.
#[derive(Debug)]
pub struct Defragmenter {
    cfg: DefragConfig,
    table: HashMap<Key, Datagram>,
    /// Creation order (for timeouts and eviction); entries may be stale.
    order: VecDeque<(Key, u64)>,
    next_gen: u64,
    bytes: usize,
    pool: Vec<Datagram>,
    c: DefragCounters,
}

/// Why `add_fragment` rejected a fragment (the datagram is dropped).
enum Reject {
    Malformed,
}

impl Defragmenter {
    /// A reassembler with the given limits.
    pub fn new(cfg: DefragConfig) -> Self {
        Defragmenter {
            cfg,
            table: HashMap::with_capacity(cfg.max_datagrams.min(1024)),
            order: VecDeque::new(),
            next_gen: 0,
            bytes: 0,
            pool: Vec::new(),
            c: DefragCounters::default(),
        }
    }

    /// Counters, with the gauges filled in.
    pub fn counters(&self) -> DefragCounters {
        DefragCounters {
            pending_datagrams: self.table.len() as u64,
            pending_bytes: self.bytes as u64,
            ..self.c
        }
    }

    /// Feeds a fragment. When it completes its datagram, writes the
    /// reassembled IP packet (raw IP: IPv4 header with MF/offset cleared,
    /// correct total length and checksum; IPv6 with the Fragment header
    /// removed and the payload length fixed) into `out` (cleared first) and
    /// returns true.
    pub fn push(&mut self, ts: Timestamp, frag: &FragmentRef<'_>, out: &mut Vec<u8>) -> bool {
        out.clear();
        self.c.fragments += 1;
        let len = frag.payload.len() as u64;
        let start = u64::from(frag.offset);
        let end = start + len;
        let (min_hdr, max_frag_end) = match frag.version {
            IpVersion::V4 => (20, 65535u64.saturating_sub(frag.header.len() as u64)),
            IpVersion::V6 => (
                40,
                65535u64.saturating_sub(frag.header.len().saturating_sub(40) as u64),
            ),
        };
        let key = Key {
            src: frag.src,
            dst: frag.dst,
            id: frag.id,
            proto: if frag.version == IpVersion::V4 {
                frag.protocol
            } else {
                0
            },
        };
        let bad_shape = frag.header.len() < min_hdr
            || frag.next_header_index >= frag.header.len()
            || (frag.more_fragments && (len == 0 || len & 7 != 0));
        if bad_shape || end > max_frag_end {
            self.c.malformed += 1;
            if end > max_frag_end {
                // The whole datagram is unusable.
                self.remove(&key);
            }
            return false;
        }
        let (start, end) = (start as u32, end as u32);

        // Lazily expire a stale datagram with the same key.
        if let Some(dg) = self.table.get(&key) {
            if ts.0.saturating_sub(dg.created.0) >= self.cfg.timeout.0 {
                self.remove(&key);
                self.c.timed_out += 1;
            }
        }
        if !self.table.contains_key(&key) {
            if self.cfg.max_datagrams == 0 {
                self.c.evicted_table_full += 1;
                return false;
            }
            while self.table.len() >= self.cfg.max_datagrams {
                if self.evict_oldest().is_none() {
                    break;
                }
                self.c.evicted_table_full += 1;
            }
            let mut dg = self.pool.pop().unwrap_or_default();
            dg.created = ts;
            dg.gen = self.next_gen;
            dg.version = Some(frag.version);
            self.order.push_back((key, self.next_gen));
            self.next_gen += 1;
            self.table.insert(key, dg);
            self.maybe_compact_order();
        }

        // Memory budget.
        let growth = {
            let dg = &self.table[&key];
            let data_growth = (end as usize).saturating_sub(dg.data.len());
            let hdr_growth = if start == 0 && dg.header.is_empty() {
                frag.header.len()
            } else {
                0
            };
            data_growth + hdr_growth
        };
        while self.bytes + growth > self.cfg.max_bytes {
            match self.oldest_live() {
                Some(k) if k != key => {
                    self.remove(&k);
                    self.c.dropped_over_memory += 1;
                }
                _ => {
                    self.remove(&key);
                    self.c.dropped_over_memory += 1;
                    return false;
                }
            }
        }

        let result = {
            let dg = match self.table.get_mut(&key) {
                Some(d) => d,
                None => return false,
            };
            let before = dg.mem();
            let r = add_fragment(dg, frag, start, end);
            self.bytes += dg.mem() - before;
            r
        };
        match result {
            Err(Reject::Malformed) => {
                self.c.malformed += 1;
                self.remove(&key);
                false
            }
            Ok((inconsistent, complete)) => {
                if inconsistent {
                    self.c.overlaps += 1;
                }
                if !complete {
                    return false;
                }
                let ok = build(&self.table[&key], out);
                self.remove(&key);
                if ok {
                    self.c.reassembled += 1;
                } else {
                    out.clear();
                    self.c.malformed += 1;
                }
                ok
            }
        }
    }

    /// Drops datagrams whose first fragment arrived `timeout` or longer before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(&(key, gen)) = self.order.front() {
            match self.table.get(&key) {
                Some(dg) if dg.gen == gen => {
                    if now.0.saturating_sub(dg.created.0) < self.cfg.timeout.0 {
                        break;
                    }
                    self.order.pop_front();
                    self.remove(&key);
                    self.c.timed_out += 1;
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Key of the oldest live datagram, popping stale order entries.
    fn oldest_live(&mut self) -> Option<Key> {
        while let Some(&(key, gen)) = self.order.front() {
            if self.table.get(&key).is_some_and(|d| d.gen == gen) {
                return Some(key);
            }
            self.order.pop_front();
        }
        None
    }

    fn evict_oldest(&mut self) -> Option<Key> {
        let k = self.oldest_live()?;
        self.remove(&k);
        Some(k)
    }

    fn remove(&mut self, key: &Key) {
        if let Some(mut dg) = self.table.remove(key) {
            self.bytes -= dg.mem();
            if self.pool.len() < POOL_MAX
                && dg.data.capacity() <= POOL_MAX_CAPACITY
                && dg.ranges.capacity() <= MAX_RANGES + 1
            {
                dg.header.clear();
                dg.data.clear();
                dg.ranges.clear();
                dg.total = None;
                dg.version = None;
                self.pool.push(dg);
            }
        }
    }

    fn maybe_compact_order(&mut self) {
        if self.order.len() > 2 * self.table.len() + 64 {
            let table = &self.table;
            self.order
                .retain(|(k, g)| table.get(k).is_some_and(|d| d.gen == *g));
        }
    }
}

/// Adds one fragment's bytes (first-arrived wins). Returns
/// `(inconsistent_overlap, complete)`.
fn add_fragment(
    dg: &mut Datagram,
    frag: &FragmentRef<'_>,
    start: u32,
    end: u32,
) -> Result<(bool, bool), Reject> {
    if dg.version != Some(frag.version) {
        return Err(Reject::Malformed);
    }
    if !frag.more_fragments {
        if dg.total.is_some_and(|t| t != end) || dg.data.len() > end as usize {
            return Err(Reject::Malformed);
        }
        dg.total = Some(end);
    } else if dg.total.is_some_and(|t| end > t) {
        return Err(Reject::Malformed);
    }
    if start == 0 && dg.header.is_empty() {
        dg.header.extend_from_slice(frag.header);
        dg.nh_index = frag.next_header_index;
        dg.protocol = frag.protocol;
    }
    if dg.data.len() < end as usize {
        dg.data.resize(end as usize, 0);
    }

    // Copy into gaps; compare overlaps.
    let payload = frag.payload;
    let mut pos = start;
    let mut inconsistent = false;
    for &(rs, re) in &dg.ranges {
        if re <= pos {
            continue;
        }
        if rs >= end {
            break;
        }
        if rs > pos {
            dg.data[pos as usize..rs as usize]
                .copy_from_slice(&payload[(pos - start) as usize..(rs - start) as usize]);
        }
        let os = rs.max(pos);
        let oe = re.min(end);
        if dg.data[os as usize..oe as usize]
            != payload[(os - start) as usize..(oe - start) as usize]
        {
            inconsistent = true;
        }
        pos = oe;
        if pos >= end {
            break;
        }
    }
    if pos < end {
        dg.data[pos as usize..end as usize].copy_from_slice(&payload[(pos - start) as usize..]);
    }

    // Merge [start, end) into the range list.
    if end > start {
        let i = dg.ranges.partition_point(|r| r.1 < start);
        let (mut s, mut e) = (start, end);
        let mut j = i;
        while j < dg.ranges.len() && dg.ranges[j].0 <= e {
            s = s.min(dg.ranges[j].0);
            e = e.max(dg.ranges[j].1);
            j += 1;
        }
        dg.ranges.drain(i..j);
        dg.ranges.insert(i, (s, e));
        if dg.ranges.len() > MAX_RANGES {
            return Err(Reject::Malformed);
        }
    }

    let complete = match dg.total {
        Some(t) => {
            !dg.header.is_empty() && (t == 0 || (dg.ranges.len() == 1 && dg.ranges[0] == (0, t)))
        }
        None => false,
    };
    Ok((inconsistent, complete))
}

/// Writes the reassembled packet. Returns false if it would be oversized.
fn build(dg: &Datagram, out: &mut Vec<u8>) -> bool {
    let t = dg.total.unwrap_or(0) as usize;
    let h = &dg.header;
    match dg.version {
        Some(IpVersion::V4) => {
            let total = h.len() + t;
            if total > 65535 || h.len() < 20 {
                return false;
            }
            out.extend_from_slice(h);
            out.extend_from_slice(&dg.data[..t]);
            out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            out[6] &= 0x40; // keep DF; clear reserved, MF and offset
            out[7] = 0;
            out[10] = 0;
            out[11] = 0;
            let ihl = (usize::from(out[0] & 0x0f) * 4).clamp(20, h.len());
            let c = !checksum_fold(checksum_sum(&out[..ihl], 0));
            out[10..12].copy_from_slice(&c.to_be_bytes());
            true
        }
        Some(IpVersion::V6) => {
            let plen = h.len() - 40 + t;
            if plen > 65535 || h.len() < 40 || dg.nh_index >= h.len() {
                return false;
            }
            out.extend_from_slice(h);
            out.extend_from_slice(&dg.data[..t]);
            out[dg.nh_index] = dg.protocol;
            out[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Decoded};
    use crate::source::LinkType;
    use crate::testutil::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const S: u64 = 1_000_000_000;

    fn addrs4() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 2, 2, 2)),
        )
    }

    fn addrs6() -> (IpAddr, IpAddr) {
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        )
    }

    /// A whole IPv4/TCP packet (DF clear, so it equals its reassembly) with a 100-byte payload.
    fn whole_v4(id: u16, fill: u8) -> Vec<u8> {
        let (s, d) = addrs4();
        let payload: Vec<u8> = (0..100u8).map(|i| i ^ fill).collect();
        let seg = TcpSpec {
            payload,
            ..TcpSpec::default()
        };
        let mut ip = ipv4_packet(s, d, &[], 6, &tcp_segment(s, d, &seg));
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6] = 0;
        fix_ipv4_checksum(&mut ip);
        ip
    }

    /// Fragment of an IPv4 packet without options: payload bytes [off, off+len).
    fn v4_frag(whole: &[u8], off: usize, len: usize, mf: bool) -> Vec<u8> {
        let mut f = whole[..20].to_vec();
        f.extend_from_slice(&whole[20 + off..20 + off + len]);
        f[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        let fo = (off / 8) as u16 | if mf { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&fo.to_be_bytes());
        fix_ipv4_checksum(&mut f);
        f
    }

    fn frag_of(pkt: &[u8]) -> FragmentRef<'_> {
        match decode(LinkType::Raw, pkt, true) {
            Ok(Decoded::Fragment(f)) => f,
            other => panic!("not a fragment: {other:?}"),
        }
    }

    fn feed(d: &mut Defragmenter, ts: u64, pkts: &[Vec<u8>]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut done = None;
        for p in pkts {
            if d.push(Timestamp(ts as i64), &frag_of(p), &mut out) {
                assert!(done.is_none(), "completed twice");
                done = Some(out.clone());
            }
        }
        done
    }

    fn v4_pieces(whole: &[u8]) -> Vec<Vec<u8>> {
        // TCP segment = 120 bytes: 48 + 48 + 24
        vec![
            v4_frag(whole, 0, 48, true),
            v4_frag(whole, 48, 48, true),
            v4_frag(whole, 96, 24, false),
        ]
    }

    #[test]
    fn v4_in_order() {
        let whole = whole_v4(7, 0);
        let mut d = Defragmenter::new(DefragConfig::default());
        let out = feed(&mut d, 0, &v4_pieces(&whole)).expect("complete");
        assert_eq!(out, whole);
        match decode(LinkType::Raw, &out, true) {
            Ok(Decoded::Tcp(t)) => assert_eq!(t.payload.len(), 100),
            other => panic!("{other:?}"),
        }
        let c = d.counters();
        assert_eq!(
            (
                c.fragments,
                c.reassembled,
                c.pending_datagrams,
                c.pending_bytes
            ),
            (3, 1, 0, 0)
        );
    }

    #[test]
    fn v4_out_of_order_and_duplicate() {
        let whole = whole_v4(8, 3);
        let p = v4_pieces(&whole);
        let mut d = Defragmenter::new(DefragConfig::default());
        let out = feed(
            &mut d,
            0,
            &[p[2].clone(), p[1].clone(), p[1].clone(), p[0].clone()],
        )
        .expect("complete");
        assert_eq!(out, whole);
        let c = d.counters();
        assert_eq!((c.reassembled, c.overlaps, c.malformed), (1, 0, 0));
    }

    #[test]
    fn v4_overlap_first_arrived_wins() {
        let whole = whole_v4(9, 0);
        let mut other = whole_v4(9, 0xff); // same header, different payload bytes
        other[20..40].copy_from_slice(&whole[20..40]); // same TCP header
        let mut d = Defragmenter::new(DefragConfig::default());
        // [0,56) from `whole`, then [48,120) from `other`: bytes 48..56 conflict.
        let out = feed(
            &mut d,
            0,
            &[v4_frag(&whole, 0, 56, true), v4_frag(&other, 48, 72, false)],
        )
        .expect("complete");
        assert_eq!(&out[20..76], &whole[20..76]);
        assert_eq!(&out[76..], &other[76..]);
        assert_eq!(d.counters().overlaps, 1);
        // A consistent overlap is not counted.
        let mut d = Defragmenter::new(DefragConfig::default());
        let out = feed(
            &mut d,
            0,
            &[v4_frag(&whole, 0, 56, true), v4_frag(&whole, 48, 72, false)],
        )
        .unwrap();
        assert_eq!(out, whole);
        assert_eq!(d.counters().overlaps, 0);
    }

    #[test]
    fn v4_timeout() {
        let whole = whole_v4(10, 0);
        let p = v4_pieces(&whole);
        let mut d = Defragmenter::new(DefragConfig::default());
        assert!(feed(&mut d, 0, &p[..2]).is_none());
        d.expire(Timestamp((29 * S) as i64));
        assert_eq!(d.counters().pending_datagrams, 1);
        d.expire(Timestamp((30 * S) as i64));
        let c = d.counters();
        assert_eq!(
            (c.timed_out, c.pending_datagrams, c.pending_bytes),
            (1, 0, 0)
        );
        // The last piece alone cannot complete the datagram.
        assert!(feed(&mut d, 31 * S, &p[2..]).is_none());
        // Lazy expiry when a fragment arrives long after the first one.
        let mut d = Defragmenter::new(DefragConfig::default());
        assert!(feed(&mut d, 0, &p[..2]).is_none());
        assert!(feed(&mut d, 40 * S, &p[2..]).is_none());
        assert_eq!(d.counters().timed_out, 1);
    }

    #[test]
    fn v4_table_full_evicts_oldest() {
        let cfg = DefragConfig {
            max_datagrams: 2,
            ..DefragConfig::default()
        };
        let mut d = Defragmenter::new(cfg);
        let w: Vec<Vec<u8>> = (0..3).map(|i| whole_v4(100 + i, i as u8)).collect();
        let p: Vec<Vec<Vec<u8>>> = w.iter().map(|x| v4_pieces(x)).collect();
        for pieces in &p {
            assert!(feed(&mut d, 0, &pieces[..1]).is_none());
        }
        let c = d.counters();
        assert_eq!((c.evicted_table_full, c.pending_datagrams), (1, 2));
        assert_eq!(feed(&mut d, 0, &p[1][1..]).unwrap(), w[1]);
        assert_eq!(feed(&mut d, 0, &p[2][1..]).unwrap(), w[2]);
        assert!(feed(&mut d, 0, &p[0][1..]).is_none(), "oldest was evicted");
    }

    #[test]
    fn memory_limit() {
        let cfg = DefragConfig {
            max_bytes: 150,
            ..DefragConfig::default()
        };
        let mut d = Defragmenter::new(cfg);
        let a = whole_v4(1, 0);
        let b = whole_v4(2, 0);
        let pa = v4_pieces(&a);
        let pb = v4_pieces(&b);
        assert!(feed(&mut d, 0, &pa[..2]).is_none()); // 20 + 96 bytes held
        assert!(feed(&mut d, 0, &pb[..1]).is_none()); // needs 68 more: evicts a
        let c = d.counters();
        assert_eq!((c.dropped_over_memory, c.pending_datagrams), (1, 1));
        assert!(c.pending_bytes <= 150);
        assert_eq!(feed(&mut d, 0, &pb[1..]).unwrap(), b);
        // A datagram larger than the whole budget is dropped.
        let cfg = DefragConfig {
            max_bytes: 60,
            ..DefragConfig::default()
        };
        let mut d = Defragmenter::new(cfg);
        assert!(feed(&mut d, 0, &pa).is_none());
        assert!(d.counters().dropped_over_memory >= 1);
        assert_eq!(d.counters().reassembled, 0);
    }

    #[test]
    fn oversized_and_malformed() {
        let whole = whole_v4(11, 0);
        let mut d = Defragmenter::new(DefragConfig::default());
        // Offset 65528 + 24 bytes > 65535 - 20.
        let mut f = v4_frag(&whole, 0, 24, false);
        f[6..8].copy_from_slice(&(65528u16 / 8).to_be_bytes());
        fix_ipv4_checksum(&mut f);
        assert!(feed(&mut d, 0, &[f]).is_none());
        assert_eq!(d.counters().malformed, 1);
        // Non-final fragment with a length that is not a multiple of 8.
        assert!(feed(&mut d, 0, &[v4_frag(&whole, 0, 20, true)]).is_none());
        assert_eq!(d.counters().malformed, 2);
        // Conflicting final lengths.
        let p = v4_pieces(&whole);
        assert!(feed(&mut d, 0, &[p[2].clone(), v4_frag(&whole, 96, 16, false)]).is_none());
        assert_eq!(d.counters().malformed, 3);
        assert_eq!(d.counters().pending_datagrams, 0);
    }

    fn v6_frag(
        exts: &[(u8, Vec<u8>)],
        id: u32,
        fragmentable: &[u8],
        off: usize,
        len: usize,
        mf: bool,
    ) -> Vec<u8> {
        let (s, d) = addrs6();
        let mut e = exts.to_vec();
        let fo = (off as u16) | u16::from(mf);
        let mut body = fo.to_be_bytes().to_vec();
        body.extend_from_slice(&id.to_be_bytes());
        e.push((44, body));
        ipv6_packet(s, d, &e, 6, &fragmentable[off..off + len])
    }

    #[test]
    fn v6_in_order_out_of_order_with_ext_headers() {
        let (s, d) = addrs6();
        let seg = TcpSpec {
            payload: vec![0x42; 150],
            ..TcpSpec::default()
        };
        let tcp = tcp_segment(s, d, &seg); // 170 bytes
        for exts in [
            vec![],
            vec![(0u8, vec![1, 4, 0, 0, 0, 0]), (60, vec![1, 4, 0, 0, 0, 0])],
        ] {
            let whole = ipv6_packet(s, d, &exts, 6, &tcp);
            let pieces = [
                v6_frag(&exts, 0xabcd, &tcp, 0, 64, true),
                v6_frag(&exts, 0xabcd, &tcp, 64, 64, true),
                v6_frag(&exts, 0xabcd, &tcp, 128, 42, false),
            ];
            for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0]] {
                let mut dfr = Defragmenter::new(DefragConfig::default());
                let ps: Vec<Vec<u8>> = order.iter().map(|&i| pieces[i].clone()).collect();
                let out = feed(&mut dfr, 0, &ps).expect("complete");
                assert_eq!(out, whole, "order {order:?}");
                match decode(LinkType::Raw, &out, true) {
                    Ok(Decoded::Tcp(t)) => assert_eq!(t.payload, &[0x42; 150][..]),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn v6_overlap_duplicate_timeout_table_full() {
        let (s, d) = addrs6();
        let tcp = tcp_segment(
            s,
            d,
            &TcpSpec {
                payload: vec![7; 60],
                ..TcpSpec::default()
            },
        ); // 80 bytes
        let mut alt = tcp.clone();
        for b in &mut alt[40..] {
            *b = 9;
        }
        let mut dfr = Defragmenter::new(DefragConfig {
            max_datagrams: 1,
            ..DefragConfig::default()
        });
        // Overlap + duplicate.
        let out = feed(
            &mut dfr,
            0,
            &[
                v6_frag(&[], 1, &tcp, 0, 48, true),
                v6_frag(&[], 1, &tcp, 0, 48, true),
                v6_frag(&[], 1, &alt, 40, 40, false),
            ],
        )
        .unwrap();
        assert_eq!(&out[40..88], &tcp[..48]);
        assert_eq!(&out[88..], &alt[48..]);
        assert_eq!(dfr.counters().overlaps, 1);
        // Timeout.
        assert!(feed(&mut dfr, 0, &[v6_frag(&[], 2, &tcp, 0, 48, true)]).is_none());
        dfr.expire(Timestamp((31 * S) as i64));
        assert_eq!(dfr.counters().timed_out, 1);
        // Table full (max 1): a second id evicts the first.
        assert!(feed(&mut dfr, 0, &[v6_frag(&[], 3, &tcp, 0, 48, true)]).is_none());
        assert!(feed(&mut dfr, 0, &[v6_frag(&[], 4, &tcp, 0, 48, true)]).is_none());
        assert_eq!(dfr.counters().evicted_table_full, 1);
        assert!(feed(&mut dfr, 0, &[v6_frag(&[], 3, &tcp, 48, 32, false)]).is_none());
        assert_eq!(dfr.counters().reassembled, 1);
    }

    #[test]
    fn many_datagrams_stay_bounded() {
        let cfg = DefragConfig {
            max_datagrams: 16,
            max_bytes: 4096,
            ..DefragConfig::default()
        };
        let mut d = Defragmenter::new(cfg);
        for i in 0..5000u16 {
            let w = whole_v4(i, i as u8);
            let p = v4_pieces(&w);
            // Every other datagram completes, the rest stay pending.
            let got = feed(
                &mut d,
                u64::from(i) * 1000,
                if i % 2 == 0 { &p[..] } else { &p[..1] },
            );
            assert_eq!(got.is_some(), i % 2 == 0);
            assert!(d.table.len() <= 16 && d.bytes <= 4096);
            assert!(d.order.len() <= 2 * d.table.len() + 70);
            assert!(d.pool.len() <= POOL_MAX);
        }
        assert_eq!(d.counters().reassembled, 2500);
    }

    #[test]
    fn random_fragments_never_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::default();
        runner
            .run(
                &proptest::collection::vec(
                    (0u32..70000, 0usize..100, any::<bool>(), 0u32..3),
                    1..40,
                ),
                |ops| {
                    let (s, dst) = addrs4();
                    let hdr = ipv4_packet(s, dst, &[], 6, &[]);
                    let data = [0x5au8; 100];
                    let mut d = Defragmenter::new(DefragConfig {
                        max_datagrams: 4,
                        max_bytes: 1000,
                        ..DefragConfig::default()
                    });
                    let mut out = Vec::new();
                    for (off, len, mf, id) in ops {
                        let f = FragmentRef {
                            version: IpVersion::V4,
                            src: s,
                            dst,
                            id,
                            offset: off & !7,
                            more_fragments: mf,
                            protocol: 6,
                            header: &hdr,
                            next_header_index: 9,
                            payload: &data[..len],
                        };
                        if d.push(Timestamp(0), &f, &mut out) {
                            prop_assert!(out.len() <= 65535);
                        }
                        prop_assert!(d.bytes <= 1000);
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}
