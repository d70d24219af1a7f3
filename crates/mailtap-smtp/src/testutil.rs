//! Test scaffolding: a connection context over a local output batch.

use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Event, Output, Record, SmtpRecord, Timestamp, WeirdRecord};

pub struct Harness {
    pub out: Output,
    pub conn: ConnAnnotations,
    pub id: ConnId,
    pub uid: String,
    pub ts: Timestamp,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            out: Output::new(true),
            conn: ConnAnnotations::default(),
            id: ConnId {
                orig_h: "10.10.1.4".parse().unwrap(),
                orig_p: 1470,
                resp_h: "74.53.140.153".parse().unwrap(),
                resp_p: 25,
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
            .filter_map(|r| {
                if let Record::Weird(w) = r {
                    Some(&**w)
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn weird_names(&self) -> Vec<&'static str> {
        self.weirds().iter().map(|w| w.name).collect()
    }

    pub fn smtp(&self) -> Vec<&SmtpRecord> {
        self.out
            .records
            .iter()
            .filter_map(|r| {
                if let Record::Smtp(s) = r {
                    Some(&**s)
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn events(&self) -> Vec<&Event> {
        self.out
            .records
            .iter()
            .filter_map(|r| {
                if let Record::Event(e) = r {
                    Some(&e.event)
                } else {
                    None
                }
            })
            .collect()
    }
}
