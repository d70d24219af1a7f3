//! Test scaffolding: a connection context over a local output batch.

use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Event, Output, Pop3Record, Record, Timestamp, WeirdRecord};

pub struct Harness {
    pub out: Output,
    pub conn: ConnAnnotations,
    pub id: ConnId,
    pub uid: String,
    pub ts: Timestamp,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_events(true)
    }

    pub fn with_events(events: bool) -> Self {
        Harness {
            out: Output::new(events),
            conn: ConnAnnotations::default(),
            id: ConnId {
                orig_h: "192.168.0.4".parse().unwrap(),
                orig_p: 26383,
                resp_h: "212.227.15.166".parse().unwrap(),
                resp_p: 110,
            },
            uid: "CHhAvVGS1DHFjwGM9".into(),
            ts: Timestamp(1_000_000_000),
        }
    }

    pub fn cx(&mut self) -> ConnCtx<'_> {
        ConnCtx {
            ts: self.ts,
            uid: &self.uid,
            id: &self.id,
            out: &mut self.out,
            conn: &mut self.conn,
        }
    }

    pub fn weirds(&self) -> Vec<&WeirdRecord> {
        self.out
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Weird(w) => Some(&**w),
                _ => None,
            })
            .collect()
    }

    pub fn weird_names(&self) -> Vec<&'static str> {
        self.weirds().iter().map(|w| w.name).collect()
    }

    pub fn pop3(&self) -> Vec<&Pop3Record> {
        self.out
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Pop3(p) => Some(&**p),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self) -> Vec<&Event> {
        self.out
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(&e.event),
                _ => None,
            })
            .collect()
    }
}
