//! Shared vocabulary of mailtap: timestamps, connection ids and uids, the
//! records every analyzer produces (conn, smtp, weird, events) with their
//! Zeek schemas, and the [`analyzer::TcpAnalyzer`] trait through which the
//! flow layer hands reassembled bytes to protocol analyzers.
//!
//! Data flows one way: capture -> decode -> flow/reassembly -> analyzers ->
//! *records (this crate)* -> collector -> sinks. This crate has no
//! dependencies so every stage can name the same types.

pub mod analyzer;
pub mod budget;
pub mod event;
pub mod mail;
pub mod output;
pub mod record;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod weird;

pub use analyzer::{ConnCtx, Output, TcpAnalyzer};
pub use budget::{BufferBudget, Charge, BUFFER_FLOOR};
pub use event::{Event, EventRecord};
pub use record::{
    ConnId, ConnRecord, FieldDef, FileHashes, FileRecord, ImapRecord, Pop3Record, Record,
    SmtpRecord, Value, WeirdRecord, ZeekRecord,
};
pub use time::{Interval, Timestamp};
pub use weird::Weird;

/// Zeek strings are byte strings; they are escaped only when written.
pub type Bytes = Vec<u8>;
