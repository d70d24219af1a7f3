//! Central x509.log deduplication, as Zeek 8's x509 script does it: a
//! certificate is logged once per (fingerprint, host_cert, client_cert)
//! and again only after `X509::relog_known_certificates_after` (one day)
//! has passed since it was last logged.
//!
//! Analyzers emit a row for every certificate they see; the collector
//! passes each through one [`X509Dedup`] (shards see different
//! connections, so deduplicating per shard would log repeats). Memory is
//! bounded: past `capacity` keys the least recently logged one is
//! forgotten, so a certificate evicted that way is logged again the next
//! time it is seen (Zeek's table is unbounded).

use mailtap_core::record::X509Record;
use std::collections::{HashMap, VecDeque};

/// Zeek 8's `X509::relog_known_certificates_after`.
pub const RELOG_AFTER_SECS: i64 = 86_400;

type Key = (Vec<u8>, bool, bool);

/// Remembers which certificates were logged, and when.
pub struct X509Dedup {
    capacity: usize,
    /// Key -> (time logged in whole microseconds, generation).
    seen: HashMap<Key, (i64, u64)>,
    /// Keys in logging order with the generation they were logged under
    /// (stale entries are skipped at eviction).
    order: VecDeque<(Key, u64)>,
    generation: u64,
}

impl X509Dedup {
    /// `capacity` keys at most (at least 1).
    pub fn new(capacity: usize) -> Self {
        X509Dedup {
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
        }
    }

    /// Number of remembered certificates.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// True when `rec` is to be logged (first sighting of its key, or the
    /// last logged row of that key is a day old or more); false for a row
    /// Zeek would not log.
    pub fn admit(&mut self, rec: &X509Record) -> bool {
        let now = rec.ts.0 / 1000;
        let key: Key = (rec.fingerprint.clone(), rec.host_cert, rec.client_cert);
        if let Some(&(t, _)) = self.seen.get(&key) {
            if now.saturating_sub(t) < RELOG_AFTER_SECS * 1_000_000 {
                return false;
            }
        }
        self.generation += 1;
        self.seen.insert(key.clone(), (now, self.generation));
        self.order.push_back((key, self.generation));
        while self.seen.len() > self.capacity {
            let Some((k, g)) = self.order.pop_front() else {
                break;
            };
            if self.seen.get(&k).is_some_and(|&(_, cur)| cur == g) {
                self.seen.remove(&k);
            }
        }
        // Stale queue entries (keys relogged later) are dropped lazily;
        // bound the queue too.
        if self.order.len() > self.capacity * 2 {
            let seen = &self.seen;
            self.order
                .retain(|(k, g)| seen.get(k).is_some_and(|&(_, cur)| cur == *g));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtap_core::Timestamp;

    fn rec(fp: &str, secs: i64, host: bool, client: bool) -> X509Record {
        X509Record {
            ts: Timestamp(secs * 1_000_000_000),
            fingerprint: fp.as_bytes().to_vec(),
            host_cert: host,
            client_cert: client,
            ..X509Record::default()
        }
    }

    #[test]
    fn once_per_key_and_day() {
        let mut d = X509Dedup::new(10);
        assert!(d.admit(&rec("a", 100, true, false)));
        assert!(!d.admit(&rec("a", 200, true, false)));
        // Same certificate in another role is another key.
        assert!(d.admit(&rec("a", 200, false, false)));
        assert!(d.admit(&rec("a", 200, true, true)));
        assert!(!d.admit(&rec("a", 100 + 86_399, true, false)));
        assert!(d.admit(&rec("a", 100 + 86_400, true, false)));
        assert!(!d.admit(&rec("a", 100 + 86_401, true, false)));
    }

    #[test]
    fn bounded() {
        let mut d = X509Dedup::new(2);
        assert!(d.admit(&rec("a", 1, false, false)));
        assert!(d.admit(&rec("b", 1, false, false)));
        assert!(d.admit(&rec("c", 1, false, false)));
        assert_eq!(d.len(), 2);
        // "a" was evicted: logged again; "c" is still known.
        assert!(!d.admit(&rec("c", 2, false, false)));
        assert!(d.admit(&rec("a", 2, false, false)));
        for i in 0..1000 {
            d.admit(&rec(&i.to_string(), 3, false, false));
        }
        assert!(d.len() <= 2 && d.order.len() <= 4);
    }
}
