//! TCP framing of a session: per-direction send queues turned into
//! packets (sequence numbers, segment sizes by the MSS, delayed ACKs,
//! handshake and teardown).
use super::*;

impl Session {
    /// The stream offset of the next byte queued for `dir`.
    pub(super) fn stream_off(&self, dir: usize) -> u64 {
        let sent = self.seq[dir].wrapping_sub(self.isn[dir].wrapping_add(1)) as u64;
        sent + self.flights[dir]
            .iter()
            .map(|s| s.len() as u64)
            .sum::<u64>()
    }

    /// A span for the message reported last, starting at client offset
    /// `start`.
    pub(super) fn new_span(&self, data_dir: usize, start: u64) -> Span {
        Span {
            isn: self.isn[C],
            orig: (self.ip[0], self.port[0]),
            resp: (self.ip[1], self.port[1]),
            index: self.reported.saturating_sub(1),
            data_dir,
            start,
            data_mark: (data_dir, 0),
            data: Vec::new(),
            end: (S, 0),
        }
    }

    pub(super) fn emit_span(&mut self, ctx: &mut Ctx) {
        if let (Some(cb), Some(sp)) = (ctx.on_span.as_mut(), self.span.take()) {
            cb(&sp);
        }
    }

    /// Builds the next packet into `buf` (a full pcap record), then returns
    /// the delay in microseconds until the session's following packet, or
    /// `None` when the session is finished.
    pub(crate) fn emit(&mut self, ctx: &mut Ctx, buf: &mut Vec<u8>) -> Option<u32> {
        if self.plan.is_empty() {
            self.advance(ctx);
        }
        let item = *self.plan.front()?;
        let dir = item.dir as usize;
        match item.kind {
            Kind::Syn => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, SYN, 0, true);
                self.seq[dir] = self.seq[dir].wrapping_add(1);
                self.plan.pop_front();
            }
            Kind::SynAck => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, SYN | ACK, 0, true);
                self.seq[dir] = self.seq[dir].wrapping_add(1);
                self.plan.pop_front();
            }
            Kind::Ack => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, ACK, 0, false);
                self.plan.pop_front();
            }
            Kind::Fin => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, FIN | ACK, 0, false);
                self.seq[dir] = self.seq[dir].wrapping_add(1);
                self.plan.pop_front();
            }
            Kind::Data {
                remaining,
                bulk,
                since_ack,
            } => {
                let mut n = remaining.min(self.mss);
                let mut write_end = false;
                let chunked = bulk && dir == C && self.data_write.is_some();
                if let (true, Some((a, b))) = (chunked, self.data_write) {
                    if self.write_left == 0 {
                        self.write_left = self.rng.range32(a, b);
                    }
                    n = n.min(self.write_left);
                    self.write_left -= n;
                    write_end = self.write_left == 0;
                }
                let last = n == remaining;
                if last {
                    self.write_left = 0;
                }
                let flags = if last || write_end { ACK | PSH } else { ACK };
                self.packet(ctx.pools, buf, ctx.now_us, dir, flags, n as usize, false);
                if self.tls_on && n > 0 {
                    self.tls_bytes += buf.len() as u64;
                }
                if self.drop_pending && dir == C && bulk && since_ack == 1 && !last {
                    // left out of the capture; the peer still acknowledges it
                    buf.clear();
                    self.drop_pending = false;
                    *ctx.dropped += 1;
                }
                self.seq[dir] = self.seq[dir].wrapping_add(n);
                if last {
                    self.plan.pop_front();
                } else {
                    let since = since_ack + 1;
                    let ack_now = bulk
                        && (since >= 2
                            || (self.ack_each > 0 && self.rng.pct(self.ack_each as u32)));
                    let gap = if ack_now {
                        self.rng.range32(1, 12)
                    } else {
                        self.rng.range32(3, 30)
                    };
                    let front = self.plan.front_mut().expect("data item");
                    front.kind = Kind::Data {
                        remaining: remaining - n,
                        bulk,
                        since_ack: if ack_now { 0 } else { since },
                    };
                    front.delay = gap;
                    if ack_now {
                        let d = self.rng.range32(5, 40);
                        self.plan.push_front(Item {
                            dir: (1 - dir) as u8,
                            kind: Kind::Ack,
                            delay: d,
                        });
                    }
                }
            }
        }
        if self.plan.is_empty() {
            self.advance(ctx);
        }
        self.plan.front().map(|i| i.delay.max(1))
    }

    /// Writes one pcap record (header + Ethernet + IP + TCP + payload taken
    /// from the direction's send queue) into `buf`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn packet(
        &mut self,
        pools: &Pools,
        buf: &mut Vec<u8>,
        ts_us: u64,
        dir: usize,
        flags: u8,
        len: usize,
        syn_opts: bool,
    ) {
        let l3 = if self.v6 { 40 } else { 20 };
        let l4 = if syn_opts { 24 } else { 20 };
        let frame = 14 + l3 + l4 + len;
        buf.clear();
        buf.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        buf.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        buf.extend_from_slice(&(frame as u32).to_le_bytes());
        buf.extend_from_slice(&(frame as u32).to_le_bytes());
        // Ethernet
        buf.extend_from_slice(&self.mac[1 - dir]);
        buf.extend_from_slice(&self.mac[dir]);
        let (src, dst) = (&self.ipb[dir], &self.ipb[1 - dir]);
        let tcp_len = l4 + len;
        if self.v6 {
            buf.extend_from_slice(&[0x86, 0xdd]);
            buf.extend_from_slice(&[0x60, 0, 0, 0]);
            buf.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            buf.extend_from_slice(&[6, self.ttl[dir]]);
            buf.extend_from_slice(src);
            buf.extend_from_slice(dst);
        } else {
            buf.extend_from_slice(&[0x08, 0x00]);
            let ip_start = buf.len();
            buf.extend_from_slice(&[0x45, 0]);
            buf.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            buf.extend_from_slice(&self.ip_id[dir].to_be_bytes());
            self.ip_id[dir] = self.ip_id[dir].wrapping_add(1);
            buf.extend_from_slice(&[0x40, 0x00, self.ttl[dir], 6, 0, 0]);
            buf.extend_from_slice(&src[..4]);
            buf.extend_from_slice(&dst[..4]);
            let cs = finish(sum_be(&buf[ip_start..ip_start + 20], 0));
            buf[ip_start + 10..ip_start + 12].copy_from_slice(&cs.to_be_bytes());
        }
        let tcp_start = buf.len();
        buf.extend_from_slice(&self.port[dir].to_be_bytes());
        buf.extend_from_slice(&self.port[1 - dir].to_be_bytes());
        buf.extend_from_slice(&self.seq[dir].to_be_bytes());
        let ack = if flags & ACK != 0 {
            self.seq[1 - dir]
        } else {
            0
        };
        buf.extend_from_slice(&ack.to_be_bytes());
        buf.push(((l4 / 4) as u8) << 4);
        buf.push(flags);
        buf.extend_from_slice(&self.win[dir].to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        if syn_opts {
            buf.extend_from_slice(&[2, 4]);
            buf.extend_from_slice(&(self.mss as u16).to_be_bytes());
        }
        // payload
        let mut need = len;
        let flight = &mut self.flights[dir];
        while need > 0 {
            let seg = flight
                .front_mut()
                .expect("send queue shorter than planned data");
            let bytes = if seg.src == SRC_LOCAL {
                &self.local[..]
            } else {
                pools.bytes(seg.src)
            };
            let take = need.min(seg.len() as usize);
            let st = seg.start as usize;
            buf.extend_from_slice(&bytes[st..st + take]);
            seg.start += take as u32;
            if seg.start == seg.end {
                flight.pop_front();
            }
            need -= take;
        }
        let mut acc = add16(self.addr_sum, 6);
        acc = add16(acc, tcp_len as u64);
        acc = sum_be(&buf[tcp_start..], acc);
        let cs = finish(acc);
        buf[tcp_start + 16..tcp_start + 18].copy_from_slice(&cs.to_be_bytes());
    }

    // ---------------------------------------------------------------- script

    pub(super) fn think(&mut self) -> u32 {
        if self.rng.pct(90) {
            self.rng.range32(40, 1_500)
        } else {
            self.rng.range32(1_500, 40_000)
        }
    }

    pub(super) fn reply_delay(&mut self, slow: bool) -> u32 {
        let proc = if slow {
            self.rng.range32(2_000, 60_000)
        } else {
            self.rng.range32(30, 900)
        };
        self.rtt + proc
    }

    pub(super) fn mark(&self) -> usize {
        self.local.len()
    }

    /// Queues local[a..] for `dir` as a data run.
    pub(super) fn send_local(&mut self, dir: usize, a: usize, delay: u32) {
        let seg = Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: self.local.len() as u32,
        };
        let len = seg.len();
        if len == 0 {
            return;
        }
        self.flights[dir].push_back(seg);
        self.plan.push_back(Item {
            dir: dir as u8,
            kind: Kind::Data {
                remaining: len,
                bulk: false,
                since_ack: 0,
            },
            delay,
        });
    }

    pub(super) fn push_data(&mut self, dir: usize, len: u64, delay: u32, bulk: bool) {
        // Runs longer than u32 are split (never happens with sane configs).
        let mut left = len;
        let mut d = delay;
        while left > 0 {
            let n = left.min(u32::MAX as u64 / 2) as u32;
            self.plan.push_back(Item {
                dir: dir as u8,
                kind: Kind::Data {
                    remaining: n,
                    bulk,
                    since_ack: 0,
                },
                delay: d,
            });
            left -= n as u64;
            d = 5;
        }
    }

    pub(super) fn maybe_client_ack(&mut self) {
        if self.rng.pct(self.reply_ack as u32) {
            let d = self.rng.range32(20, 400);
            self.plan.push_back(Item {
                dir: C as u8,
                kind: Kind::Ack,
                delay: d,
            });
        }
    }

    /// One command/reply exchange: client local[c..r], server local[r..].
    pub(super) fn exchange(&mut self, c: usize, r: usize, slow: bool) {
        let end = self.local.len();
        let think = self.think();
        // client part
        let seg = Seg {
            src: SRC_LOCAL,
            start: c as u32,
            end: r as u32,
        };
        self.flights[C].push_back(seg);
        self.plan.push_back(Item {
            dir: C as u8,
            kind: Kind::Data {
                remaining: seg.len(),
                bulk: false,
                since_ack: 0,
            },
            delay: think,
        });
        let d = self.reply_delay(slow);
        let seg = Seg {
            src: SRC_LOCAL,
            start: r as u32,
            end: end as u32,
        };
        self.flights[S].push_back(seg);
        self.plan.push_back(Item {
            dir: S as u8,
            kind: Kind::Data {
                remaining: seg.len(),
                bulk: false,
                since_ack: 0,
            },
            delay: d,
        });
        self.maybe_client_ack();
    }

    pub(super) fn teardown_server_first(&mut self) {
        let d1 = self.rng.range32(10, 200);
        let d2 = self.rtt + self.rng.range32(10, 300);
        let d3 = self.rtt;
        self.plan.push_back(Item {
            dir: S as u8,
            kind: Kind::Fin,
            delay: d1,
        });
        self.plan.push_back(Item {
            dir: C as u8,
            kind: Kind::Fin,
            delay: d2,
        });
        self.plan.push_back(Item {
            dir: S as u8,
            kind: Kind::Ack,
            delay: d3,
        });
    }
}

/// Queues bytes [from, to) of a message made of `segs` onto `flight`.
pub(super) fn push_slice(flight: &mut VecDeque<Seg>, segs: &[Seg], from: u64, to: u64) -> u64 {
    let mut off = 0u64;
    for s in segs {
        let (a, b) = (off, off + s.len() as u64);
        off = b;
        if b <= from {
            continue;
        }
        if a >= to {
            break;
        }
        let st = s.start + (from.max(a) - a) as u32;
        let en = s.start + (to.min(b) - a) as u32;
        if en > st {
            flight.push_back(Seg {
                src: s.src,
                start: st,
                end: en,
            });
        }
    }
    to - from
}
