//! Log records and their Zeek schemas.
//!
//! Each record type knows its log path, its columns (`#fields`/`#types`) and
//! how to list its values as [`Value`]s; the sinks turn those into Zeek TSV or
//! JSON. Optional Zeek fields are `Option`s (`None` is written `-`); an empty
//! string, set or vector is written `(empty)`.
//!
//! A record's columns are declared once, with [`zeek_record!`]: each column's
//! name, type and value side by side, from which both
//! [`ZeekRecord::fields`] and [`ZeekRecord::values`] are generated, so the
//! two cannot disagree.

use crate::{Bytes, Interval, Timestamp};
use std::net::IpAddr;

/// A TCP connection's endpoints, originator first (Zeek `conn_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
}

/// One column of a log: its Zeek name and Zeek type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: &'static str,
    pub ty: &'static str,
}

/// A value of one column, borrowed from the record.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Unset,
    Time(Timestamp),
    Interval(Interval),
    Str(&'a [u8]),
    Enum(&'a str),
    Addr(IpAddr),
    Port(u16),
    Count(u64),
    Bool(bool),
    /// `set[string]`: order is not meaningful.
    StrSet(&'a [Bytes]),
    /// `vector[string]`: order is meaningful.
    StrVec(&'a [Bytes]),
    /// `vector[addr]`.
    AddrVec(&'a [IpAddr]),
    /// A Zeek `time` in whole seconds since the epoch, for times that may
    /// lie outside [`Timestamp`]'s nanosecond range (certificate validity
    /// ends as late as 9999-12-31).
    Seconds(i64),
}

impl<'a> Value<'a> {
    pub fn opt_str(v: &'a Option<Bytes>) -> Value<'a> {
        match v {
            Some(s) => Value::Str(s),
            None => Value::Unset,
        }
    }
    pub fn opt_set(v: &'a Option<Vec<Bytes>>) -> Value<'a> {
        match v {
            Some(s) => Value::StrSet(s),
            None => Value::Unset,
        }
    }
    pub fn opt_vec(v: &'a Option<Vec<Bytes>>) -> Value<'a> {
        match v {
            Some(s) => Value::StrVec(s),
            None => Value::Unset,
        }
    }
    pub fn opt_addr(v: Option<IpAddr>) -> Value<'a> {
        v.map(Value::Addr).unwrap_or(Value::Unset)
    }
    pub fn opt_count(v: Option<u64>) -> Value<'a> {
        v.map(Value::Count).unwrap_or(Value::Unset)
    }
    /// The value, or [`Value::Unset`] for `None`.
    #[inline]
    pub fn or_unset(v: Option<Value<'a>>) -> Value<'a> {
        v.unwrap_or(Value::Unset)
    }
}

/// Implements [`ZeekRecord`] for a record type from one declaration of its
/// columns: for each, its Zeek name, its Zeek type and the expression that
/// gives its [`Value`] (`$r` names the record in the expressions). Both
/// [`ZeekRecord::fields`] and [`ZeekRecord::values`] come from this list, so
/// a row always has exactly its schema's columns. The type also gets
/// `FIELDS`, every column it can have.
///
/// `let` lines before the columns compute what the values borrow (once per
/// row, in [`ZeekRecord::values`] only). Trailing optional columns go in a
/// final `if let PATTERN = EXPR => { ... }` block: they are in the schema
/// and in the row exactly when the pattern matches (bindings usable in
/// their values), as for Zeek columns that a script or a setting adds.
///
/// ```
/// use mailtap_core::{zeek_record, Value};
///
/// struct Hit {
///     n: u64,
///     note: Option<String>,
/// }
///
/// zeek_record! {
///     impl ZeekRecord for Hit as r {
///         path: "hits";
///         "n": "count" => Value::Count(r.n),
///         "kind": "string" => Value::Str(b"hit"),
///         if let Some(note) = &r.note => {
///             "note": "string" => Value::Str(note.as_bytes()),
///         }
///     }
/// }
///
/// use mailtap_core::ZeekRecord;
/// let mut n = 0;
/// let hit = Hit { n: 1, note: None };
/// hit.values(&mut |_| n += 1);
/// assert_eq!((hit.fields().len(), n), (2, 2));
/// assert_eq!(Hit::FIELDS.len(), 3);
/// ```
#[macro_export]
macro_rules! zeek_record {
    (
        impl ZeekRecord for $ty:ty as $r:ident {
            path: $path:literal;
            $( let $local:ident = $init:expr; )*
            $( $name:literal : $zty:literal => $val:expr, )+
            $(
                if let $pat:pat = $scrut:expr => {
                    $( $oname:literal : $ozty:literal => $oval:expr, )+
                }
            )?
        }
    ) => {
        impl $ty {
            /// Every column this record can have, optional ones last.
            pub const FIELDS: &'static [$crate::FieldDef] = &[
                $( $crate::FieldDef { name: $name, ty: $zty }, )+
                $( $( $crate::FieldDef { name: $oname, ty: $ozty }, )+ )?
            ];
            /// How many leading columns every row has.
            const BASE_COLUMNS: usize = [$($name),+].len();
        }

        impl $crate::ZeekRecord for $ty {
            fn path(&self) -> &'static str {
                $path
            }

            #[allow(unused_variables)]
            fn fields(&self) -> &'static [$crate::FieldDef] {
                let $r = self;
                $(
                    if let $pat = $scrut {
                        return Self::FIELDS;
                    }
                )?
                &Self::FIELDS[..Self::BASE_COLUMNS]
            }

            fn values(&self, out: &mut dyn FnMut($crate::Value<'_>)) {
                let $r = self;
                $( let $local = $init; )*
                $( out($val); )+
                $(
                    if let $pat = $scrut {
                        $( out($oval); )+
                    }
                )?
            }
        }
    };
}

/// A record that can be written to a Zeek log.
pub trait ZeekRecord {
    /// The log's `#path`, e.g. `smtp`.
    fn path(&self) -> &'static str;
    /// The columns, in order. Must be the same for every record of a path
    /// within one run (a writer takes the schema of its first record).
    fn fields(&self) -> &'static [FieldDef];
    /// Calls `out` once per column, in the order of [`ZeekRecord::fields`].
    fn values(&self, out: &mut dyn FnMut(Value<'_>));
}

/// Everything the analyzers produce, as it crosses to the collector.
#[derive(Clone, Debug)]
pub enum Record {
    Conn(Box<ConnRecord>),
    Smtp(Box<SmtpRecord>),
    Weird(Box<WeirdRecord>),
    Event(Box<crate::EventRecord>),
    Pop3(Box<Pop3Record>),
    /// One imap.log row (mailtap's own log).
    Imap(Box<ImapRecord>),
    File(Box<FileRecord>),
    Ssl(Box<SslRecord>),
    X509(Box<X509Record>),
    /// Bytes of an extracted message, in order (see [`crate::mail`]).
    EmailData(Box<crate::mail::EmailChunk>),
    /// The end of an extracted message and its metadata.
    EmailMeta(Box<crate::mail::EmailMeta>),
}

/// Heap bytes counted for every allocation a record makes besides its
/// payload: the allocator's header and rounding, roughly.
const ALLOC_SLACK: usize = 16;

/// What [`Record::approx_bytes`] adds for the strings and lists of a log
/// row, which it does not walk (rows are few; events and message bytes,
/// which it measures, are the many).
const ROW_EXTRA: usize = 256;

impl Record {
    /// Approximately the memory the record holds: its slot in a `Vec`, its
    /// box, its uid and the bytes it carries (an event's arguments, a
    /// message chunk). Cheap (no walk over a row's lists), for the byte
    /// bounds of the queues between threads.
    #[inline]
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Record>()
            + ALLOC_SLACK
            + match self {
                Record::Event(e) => {
                    size_of::<crate::EventRecord>()
                        + e.uid.capacity()
                        + ALLOC_SLACK
                        + e.event.payload_bytes()
                }
                Record::EmailData(c) => {
                    size_of::<crate::mail::EmailChunk>()
                        + c.uid.capacity()
                        + c.data.capacity()
                        + 2 * ALLOC_SLACK
                }
                Record::Conn(_) => size_of::<ConnRecord>() + ROW_EXTRA,
                Record::Smtp(_) => size_of::<SmtpRecord>() + ROW_EXTRA,
                Record::Weird(_) => size_of::<WeirdRecord>() + ROW_EXTRA,
                Record::Pop3(_) => size_of::<Pop3Record>() + ROW_EXTRA,
                Record::Imap(_) => size_of::<ImapRecord>() + ROW_EXTRA,
                Record::File(_) => size_of::<FileRecord>() + ROW_EXTRA,
                Record::Ssl(_) => size_of::<SslRecord>() + ROW_EXTRA,
                Record::X509(_) => size_of::<X509Record>() + ROW_EXTRA,
                Record::EmailMeta(_) => size_of::<crate::mail::EmailMeta>() + ROW_EXTRA,
            }
    }

    /// The record as a Zeek log record, or `None` for events (which go to
    /// the event stream, not a log).
    pub fn as_log(&self) -> Option<&dyn ZeekRecord> {
        match self {
            Record::Conn(r) => Some(&**r),
            Record::Smtp(r) => Some(&**r),
            Record::Weird(r) => Some(&**r),
            Record::Pop3(r) => Some(&**r),
            Record::Imap(r) => Some(&**r),
            Record::File(r) => Some(&**r),
            Record::Ssl(r) => Some(&**r),
            Record::X509(r) => Some(&**r),
            Record::Event(_) | Record::EmailData(_) | Record::EmailMeta(_) => None,
        }
    }
}

/// The `id.*` columns of a record whose connection may be unknown.
fn orig_h(id: &Option<ConnId>) -> Value<'static> {
    Value::or_unset(id.map(|i| Value::Addr(i.orig_h)))
}
fn orig_p(id: &Option<ConnId>) -> Value<'static> {
    Value::or_unset(id.map(|i| Value::Port(i.orig_p)))
}
fn resp_h(id: &Option<ConnId>) -> Value<'static> {
    Value::or_unset(id.map(|i| Value::Addr(i.resp_h)))
}
fn resp_p(id: &Option<ConnId>) -> Value<'static> {
    Value::or_unset(id.map(|i| Value::Port(i.resp_p)))
}

/// An optional string column held as a `String`.
fn opt_string(s: &Option<String>) -> Value<'_> {
    Value::or_unset(s.as_ref().map(|s| Value::Str(s.as_bytes())))
}

/// An optional string column held as a `&'static str`.
fn opt_static(s: Option<&'static str>) -> Value<'static> {
    Value::or_unset(s.map(|s| Value::Str(s.as_bytes())))
}

mod conn;
mod files;
mod imap;
mod pop3;
mod smtp;
mod ssl;
mod weird;
mod x509;

pub use conn::*;
pub use files::*;
pub use imap::*;
pub use pop3::*;
pub use smtp::*;
pub use ssl::*;
pub use weird::*;
pub use x509::*;

#[cfg(test)]
#[path = "../record_tests.rs"]
mod tests;
