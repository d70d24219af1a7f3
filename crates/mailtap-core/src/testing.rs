//! Test support for analyzer crates (feature `testing`): a [`ConnCtx`] over
//! a local [`Output`] batch, and accessors for what the analyzer emitted.

use crate::analyzer::ConnAnnotations;
use crate::{
    ConnCtx, ConnId, Event, FileRecord, ImapRecord, Output, Pop3Record, Record, SmtpRecord,
    Timestamp, WeirdRecord,
};

/// One connection and everything an analyzer emitted on it.
pub struct Harness {
    pub out: Output,
    pub conn: ConnAnnotations,
    pub id: ConnId,
    pub uid: String,
    /// Packet time handed to the analyzer; tests may move it.
    pub ts: Timestamp,
}

impl Harness {
    /// A connection from `orig` to `resp` (`"10.0.0.1:40000"`), with the
    /// event stream on.
    pub fn new(orig: &str, resp: &str) -> Self {
        let o: std::net::SocketAddr = orig.parse().expect("test originator address");
        let r: std::net::SocketAddr = resp.parse().expect("test responder address");
        Harness {
            out: Output::new(true),
            conn: ConnAnnotations::default(),
            id: ConnId {
                orig_h: o.ip(),
                orig_p: o.port(),
                resp_h: r.ip(),
                resp_p: r.port(),
            },
            uid: "CHhAvVGS1DHFjwGM9".into(),
            ts: Timestamp(1_000_000_000),
        }
    }

    /// Turns the event stream on or off.
    pub fn with_events(mut self, on: bool) -> Self {
        self.out.events_enabled = on;
        self
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

    fn each<'a, T: ?Sized>(&'a self, f: impl Fn(&'a Record) -> Option<&'a T>) -> Vec<&'a T> {
        self.out.records.iter().filter_map(f).collect()
    }

    pub fn weirds(&self) -> Vec<&WeirdRecord> {
        self.each(|r| {
            if let Record::Weird(w) = r {
                Some(&**w)
            } else {
                None
            }
        })
    }

    pub fn weird_names(&self) -> Vec<&'static str> {
        self.weirds().iter().map(|w| w.name).collect()
    }

    pub fn events(&self) -> Vec<&Event> {
        self.each(|r| {
            if let Record::Event(e) = r {
                Some(&e.event)
            } else {
                None
            }
        })
    }

    pub fn smtp(&self) -> Vec<&SmtpRecord> {
        self.each(|r| {
            if let Record::Smtp(s) = r {
                Some(&**s)
            } else {
                None
            }
        })
    }

    pub fn pop3(&self) -> Vec<&Pop3Record> {
        self.each(|r| {
            if let Record::Pop3(p) = r {
                Some(&**p)
            } else {
                None
            }
        })
    }

    pub fn imap(&self) -> Vec<&ImapRecord> {
        self.each(|r| {
            if let Record::Imap(p) = r {
                Some(&**p)
            } else {
                None
            }
        })
    }

    /// The extraction records of finished messages.
    pub fn email_metas(&self) -> Vec<&crate::mail::EmailMeta> {
        self.each(|r| {
            if let Record::EmailMeta(m) = r {
                Some(&**m)
            } else {
                None
            }
        })
    }

    pub fn files(&self) -> Vec<&FileRecord> {
        self.each(|r| {
            if let Record::File(f) = r {
                Some(&**f)
            } else {
                None
            }
        })
    }
}
