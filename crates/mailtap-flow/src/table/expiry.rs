//! The end of connections: expiry by packet time (inactivity, close and
//! attempt delays), eviction when the table is full, the flush at the end
//! of input, and the conn.log record.

use super::*;

impl<F: AnalyzerFactory> FlowTable<F> {
    /// Expires connections whose time has come, by packet time `now`.
    pub fn advance(&mut self, now: Timestamp, out: &mut Output) {
        if now > self.now {
            self.now = now;
        }
        while let Some(&(t, serial, slot)) = self.closed_q.front() {
            if t.0.saturating_add(self.close_delay) > self.now.0 {
                break;
            }
            self.closed_q.pop_front();
            if self.live(slot, serial).is_some() {
                self.counters.flows_closed += 1;
                self.remove(slot, out);
            }
        }
        // Connection attempts nobody answered (Zeek's tcp_attempt_delay).
        while let Some(&(t, serial, slot)) = self.attempt_q.front() {
            if t.0.saturating_add(self.attempt_delay) > self.now.0 {
                break;
            }
            self.attempt_q.pop_front();
            if self.live(slot, serial).is_some_and(|f| f.unanswered()) {
                self.counters.flows_attempts_expired += 1;
                self.remove(slot, out);
            }
        }
        while let Some(&(t, serial, slot)) = self.idle_q.front() {
            if t.0.saturating_add(self.inactivity) > self.now.0 {
                break;
            }
            self.idle_q.pop_front();
            if self.live(slot, serial).is_none() {
                continue;
            }
            let f = &mut self.flows[slot as usize];
            // The kernel may have counted packets of a bypassed connection
            // that the shard never saw.
            if f.bypass.is_kernel() {
                if let Some(c) = self.kernel.as_mut().and_then(|k| k.peek(&f.id)) {
                    for t in c.iter().filter_map(|d| d.last_seen) {
                        f.last_ts = f.last_ts.max(t);
                    }
                }
            }
            let last = f.last_ts;
            if last.0.saturating_add(self.inactivity) <= self.now.0 {
                self.counters.flows_timed_out += 1;
                self.remove(slot, out);
            } else {
                self.idle_q.push_back((last, serial, slot));
            }
        }
    }

    /// Ends every connection (end of input or shutdown), as Zeek does at
    /// termination.
    pub fn finish(&mut self, out: &mut Output) {
        // In creation order, not hash order: the same capture gives its
        // rows in the same order run after run.
        let mut slots: Vec<(u64, Slot)> = self
            .map
            .values()
            .map(|&s| (self.flows[s as usize].serial, s))
            .collect();
        slots.sort_unstable();
        for (_, slot) in slots {
            self.counters.flows_flushed_at_end += 1;
            self.remove(slot, out);
        }
        self.idle_q.clear();
        self.closed_q.clear();
        self.attempt_q.clear();
    }

    /// Makes room for one connection: the oldest unanswered connection
    /// attempt if there is one (a SYN flood evicts itself), else the least
    /// recently active connection, preferring one without analyzer state
    /// among the `EVICT_SCAN` least recently active. Evicting a connection
    /// whose analyzer has state is logged (weird and counter): its message,
    /// if one was in transfer, is flushed incomplete.
    pub(super) fn evict_one(&mut self, out: &mut Output) {
        while let Some((_, serial, slot)) = self.attempt_q.pop_front() {
            if self.live(slot, serial).is_some_and(|f| f.unanswered()) {
                self.counters.flows_evicted += 1;
                self.remove(slot, out);
                return;
            }
        }
        const EVICT_SCAN: usize = 64;
        let mut looked: Vec<(Timestamp, u64, Slot)> = Vec::new();
        let mut pick = None;
        while looked.len() < EVICT_SCAN {
            let Some((t, serial, slot)) = self.idle_q.pop_front() else {
                break;
            };
            let Some(f) = self.live(slot, serial) else {
                continue;
            };
            if f.last_ts > t {
                // Active since it was queued: to the back, by its latest
                // packet (as the inactivity check does).
                self.idle_q.push_back((f.last_ts, serial, slot));
                continue;
            }
            if !f.has_analyzer_state() {
                pick = Some(slot);
                break;
            }
            looked.push((t, serial, slot));
        }
        let pick = match pick {
            Some(p) => Some(p),
            None if !looked.is_empty() => Some(looked.remove(0).2),
            None => None,
        };
        // The others keep their place at the front, in order.
        for e in looked.into_iter().rev() {
            self.idle_q.push_front(e);
        }
        let Some(slot) = pick else {
            return;
        };
        self.counters.flows_evicted += 1;
        let f = &mut self.flows[slot as usize];
        if f.has_analyzer_state() {
            self.counters.flows_evicted_active += 1;
            let mut cx = ConnCtx {
                ts: self.now,
                uid: &f.uid,
                id: &f.id,
                out,
                conn: &mut f.ann,
            };
            cx.weird(Weird::ActiveConnectionEvicted, None, "TCP");
        }
        self.remove(slot, out);
    }

    pub(super) fn remove(&mut self, slot: Slot, out: &mut Output) {
        let Some(mut flow) = self.flows.try_remove(slot as usize) else {
            return;
        };
        self.map.remove(&flow.key);
        let ts = flow.last_ts.max(self.now);
        let Flow {
            streams,
            app,
            ann,
            uid,
            id,
            history,
            ..
        } = &mut flow;
        let mut cx = ConnCtx {
            ts,
            uid,
            id,
            out,
            conn: ann,
        };
        for (d, s) in streams.iter_mut().enumerate() {
            let is_orig = d == 0;
            let before = s.gap_bytes;
            s.flush(&mut self.budget, &mut |c| {
                to_app(
                    &self.factory,
                    &self.cfg,
                    &mut self.counters,
                    app,
                    &mut cx,
                    is_orig,
                    c,
                )
            });
            if s.gap_bytes > before {
                self.counters.gap_bytes += s.gap_bytes - before;
                history.add(b'g', is_orig);
            }
        }
        if let App::Attached(a) = app {
            a.done(&mut cx);
        }
        if flow.bypass.is_kernel() {
            if let Some(k) = self.kernel.as_mut() {
                let counts = k.finish(&flow.id);
                apply_kernel_history(&mut flow, &counts);
                let both_closed = flow
                    .ep
                    .iter()
                    .all(|e| e.state == crate::conn::EndpointState::Closed);
                for (d, c) in counts.iter().enumerate() {
                    flow.ep[d].pkts += c.packets;
                    flow.ep[d].ip_bytes += c.ip_bytes;
                    self.counters.bypassed_packets += c.packets;
                    self.counters.bypassed_bytes += c.ip_bytes;
                    if let Some(e) = c.seq_end {
                        flow.streams[d].extend_to(e);
                    }
                    // As for packets seen here: those after both FINs do
                    // not extend the duration.
                    if let Some(t) = c.last_seen.filter(|_| !both_closed) {
                        flow.dur_end = flow.dur_end.max(t);
                    }
                }
            }
        }
        if flow.ann.limit_reached {
            flow.history.mark('X');
        }
        let rec = self.conn_record(&flow);
        out.push(Record::Conn(Box::new(rec)));
    }

    fn conn_record(&self, f: &Flow<F::Analyzer>) -> ConnRecord {
        let dur = f.dur_end.since(f.first_ts);
        let has_dur = dur.0 > 0;
        ConnRecord {
            ts: f.first_ts,
            uid: f.uid.clone(),
            id: f.id,
            service: f.ann.service.clone(),
            duration: has_dur.then_some(dur),
            orig_bytes: has_dur.then(|| f.streams[0].size()),
            resp_bytes: has_dur.then(|| f.streams[1].size()),
            conn_state: conn_state(
                f.ep[0].state,
                f.ep[1].state,
                f.streams[0].size(),
                f.streams[1].size(),
            ),
            local_orig: Some(self.local.is_local(f.id.orig_h)),
            local_resp: Some(self.local.is_local(f.id.resp_h)),
            missed_bytes: f.streams[0].gap_bytes + f.streams[1].gap_bytes,
            history: f.history.s.clone(),
            orig_pkts: f.ep[0].pkts,
            orig_ip_bytes: f.ep[0].ip_bytes,
            resp_pkts: f.ep[1].pkts,
            resp_ip_bytes: f.ep[1].ip_bytes,
        }
    }
}

/// Adds the history letters of the packets the kernel counted for a
/// bypassed connection since the last time (letters `d`, `a` once per
/// direction; `w` and `t` counted, as for packets seen here).
pub(super) fn apply_kernel_history<A>(flow: &mut Flow<A>, counts: &[KernelCounts; 2]) {
    let BypassState::Kernel { applied } = &mut flow.bypass else {
        return;
    };
    for (d, c) in counts.iter().enumerate() {
        let is_orig = d == 0;
        if c.payload_packets > 0 {
            flow.history.add(b'd', is_orig);
        }
        if c.pure_acks > 0 {
            flow.history.add(b'a', is_orig);
        }
        let [zw, rx] = &mut applied[d];
        flow.history
            .add_n(b'w', is_orig, c.zero_windows.saturating_sub(*zw));
        flow.history
            .add_n(b't', is_orig, c.retransmissions.saturating_sub(*rx));
        *zw = (*zw).max(c.zero_windows);
        *rx = (*rx).max(c.retransmissions);
    }
}
