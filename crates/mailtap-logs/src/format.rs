//! Formatting records as Zeek ASCII rows, Zeek JSON lines and event lines.

use crate::escape::{push_hex_escape, write_json_str, write_zeek_str};
use crate::values::{write_addr, write_log_time, write_secs6, write_secs_json, write_u64, Budget};
use crate::{LogLimits, Truncations};
use mailtap_core::event::ArgValue;
use mailtap_core::{EventRecord, FieldDef, Value, ZeekRecord};
use std::time::SystemTime;

// ------------------------------------------------------------------ ASCII

fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Writes the header lines of a Zeek ASCII log, `#separator` to `#types`.
pub fn format_zeek_header(
    path: &str,
    fields: &[FieldDef],
    open_time: SystemTime,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(
        b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t",
    );
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b"\n#open\t");
    write_log_time(out, open_time);
    out.extend_from_slice(b"\n#fields");
    for f in fields {
        out.push(b'\t');
        out.extend_from_slice(f.name.as_bytes());
    }
    out.extend_from_slice(b"\n#types");
    for f in fields {
        out.push(b'\t');
        out.extend_from_slice(f.ty.as_bytes());
    }
    out.push(b'\n');
}

/// Writes the `#close` line of a Zeek ASCII log.
pub fn format_zeek_close(close_time: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(b"#close\t");
    write_log_time(out, close_time);
    out.push(b'\n');
}

/// Formats `rec` as one Zeek ASCII (TSV) row with its trailing newline,
/// appended to `out`, applying Zeek's log writer limits. Returns which
/// limits cut something (the caller raises the weirds).
///
/// A record gives exactly one value per column of its
/// [`ZeekRecord::fields`] (records declared with
/// [`mailtap_core::zeek_record!`] cannot do otherwise); one that does not
/// is a bug, caught by a debug assertion.
pub fn format_zeek_row(rec: &dyn ZeekRecord, limits: &LogLimits, out: &mut Vec<u8>) -> Truncations {
    zeek_row(rec, rec.fields().len(), limits, out)
}

/// Panics (debug builds) when a record gave `values` values for `ncols`
/// columns.
#[inline]
fn check_columns(rec: &dyn ZeekRecord, values: usize, ncols: usize) {
    debug_assert_eq!(
        values,
        ncols,
        "{}.log: {values} values for {ncols} columns",
        rec.path()
    );
}

/// [`format_zeek_row`] for a header of `ncols` columns. A row whose value
/// count differs is a bug (debug assertion); release builds still keep the
/// file readable, dropping values past `ncols` and writing missing ones
/// unset.
pub(crate) fn zeek_row(
    rec: &dyn ZeekRecord,
    ncols: usize,
    limits: &LogLimits,
    out: &mut Vec<u8>,
) -> Truncations {
    let start = out.len();
    let mut budget = Budget::new(limits);
    let mut col = 0usize;
    rec.values(&mut |v| {
        col += 1;
        if col > ncols {
            return;
        }
        if col > 1 {
            out.push(b'\t');
        }
        zeek_value(out, v, &mut budget);
    });
    check_columns(rec, col, ncols);
    while col < ncols {
        if col > 0 {
            out.push(b'\t');
        }
        out.push(b'-');
        col += 1;
    }
    // Zeek's ASCII writer escapes a row's first byte if it would read as a
    // meta line.
    if out.get(start) == Some(&b'#') {
        let mut esc = Vec::with_capacity(4);
        push_hex_escape(&mut esc, b'#');
        out.splice(start..start + 1, esc);
    }
    out.push(b'\n');
    budget.truncations
}

fn zeek_value(out: &mut Vec<u8>, v: Value<'_>, budget: &mut Budget<'_>) {
    match v {
        Value::Unset => out.push(b'-'),
        Value::Time(t) => write_secs6(out, t.0),
        Value::Interval(i) => write_secs6(out, i.0),
        Value::Seconds(s) => {
            write_i64(out, s);
            out.extend_from_slice(b".000000");
        }
        Value::Str(s) => {
            let s = budget.string(s);
            write_zeek_str(out, s, false);
        }
        Value::Enum(e) => write_zeek_str(out, e.as_bytes(), false),
        Value::Addr(a) => write_addr(out, a),
        Value::Port(p) => write_u64(out, u64::from(p)),
        Value::Count(c) => write_u64(out, c),
        Value::Bool(b) => out.push(if b { b'T' } else { b'F' }),
        Value::StrSet(items) | Value::StrVec(items) => {
            let n = budget.elements(items.len());
            if n == 0 {
                out.extend_from_slice(b"(empty)");
                return;
            }
            for (i, item) in items[..n].iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let s = budget.string(item);
                write_zeek_str(out, s, true);
            }
        }
        Value::AddrVec(addrs) => {
            let n = budget.elements(addrs.len());
            if n == 0 {
                out.extend_from_slice(b"(empty)");
                return;
            }
            for (i, a) in addrs[..n].iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_addr(out, *a);
            }
        }
    }
}

// ------------------------------------------------------------------- JSON

/// Formats `rec` as one Zeek JSON log line (`{...}` + newline) appended to
/// `out`: keys are the `#fields` names (`id.orig_h`), unset fields are
/// omitted, `time`/`interval` are numbers of seconds, `count`/`port`
/// numbers, `bool` `true`/`false`, sets and vectors arrays, everything else
/// strings. The same limits as the ASCII writer apply.
pub fn format_json_row(rec: &dyn ZeekRecord, limits: &LogLimits, out: &mut Vec<u8>) -> Truncations {
    json_row(rec, rec.fields(), limits, out)
}

/// [`format_json_row`] with the column names of `fields`. A row whose value
/// count differs is a bug (debug assertion); release builds drop values
/// past the end of `fields`.
pub(crate) fn json_row(
    rec: &dyn ZeekRecord,
    fields: &[FieldDef],
    limits: &LogLimits,
    out: &mut Vec<u8>,
) -> Truncations {
    let mut budget = Budget::new(limits);
    let mut col = 0usize;
    let mut first = true;
    out.push(b'{');
    rec.values(&mut |v| {
        let f = fields.get(col);
        col += 1;
        let Some(f) = f else { return };
        if matches!(v, Value::Unset) {
            return;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        json_key(out, f.name);
        json_value(out, v, &mut budget);
    });
    check_columns(rec, col, fields.len());
    out.extend_from_slice(b"}\n");
    budget.truncations
}

#[inline]
fn json_key(out: &mut Vec<u8>, name: &str) {
    write_json_str(out, name.as_bytes());
    out.push(b':');
}

fn json_value(out: &mut Vec<u8>, v: Value<'_>, budget: &mut Budget<'_>) {
    match v {
        Value::Unset => out.extend_from_slice(b"null"),
        Value::Time(t) => write_secs_json(out, t.0),
        Value::Interval(i) => write_secs_json(out, i.0),
        Value::Seconds(s) => {
            write_i64(out, s);
            out.extend_from_slice(b".0");
        }
        Value::Str(s) => {
            let s = budget.string(s);
            write_json_str(out, s);
        }
        Value::Enum(e) => write_json_str(out, e.as_bytes()),
        Value::Addr(a) => json_addr(out, a),
        Value::Port(p) => write_u64(out, u64::from(p)),
        Value::Count(c) => write_u64(out, c),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::StrSet(items) | Value::StrVec(items) => {
            let n = budget.elements(items.len());
            out.push(b'[');
            for (i, item) in items[..n].iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let s = budget.string(item);
                write_json_str(out, s);
            }
            out.push(b']');
        }
        Value::AddrVec(addrs) => {
            let n = budget.elements(addrs.len());
            out.push(b'[');
            for (i, a) in addrs[..n].iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_addr(out, *a);
            }
            out.push(b']');
        }
    }
}

#[inline]
fn json_addr(out: &mut Vec<u8>, a: std::net::IpAddr) {
    out.push(b'"');
    write_addr(out, a);
    out.push(b'"');
}

// ----------------------------------------------------------------- events

/// Formats one event as a JSON line:
/// `{"ts":..,"event":"smtp_request","uid":"C..","id":{"orig_h":..,"orig_p":..,
/// "resp_h":..,"resp_p":..},"args":{"is_orig":true,"command":"MAIL",..}}` +
/// newline. Arguments follow Zeek's names and order (see
/// [`mailtap_core::Event::args`]); strings are escaped as in JSON logs and
/// never truncated.
pub fn format_event(ev: &EventRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"ts\":");
    write_secs_json(out, ev.ts.0);
    out.extend_from_slice(b",\"event\":");
    write_json_str(out, ev.event.name().as_bytes());
    out.extend_from_slice(b",\"uid\":");
    write_json_str(out, ev.uid.as_bytes());
    out.extend_from_slice(b",\"id\":{\"orig_h\":");
    json_addr(out, ev.id.orig_h);
    out.extend_from_slice(b",\"orig_p\":");
    write_u64(out, u64::from(ev.id.orig_p));
    out.extend_from_slice(b",\"resp_h\":");
    json_addr(out, ev.id.resp_h);
    out.extend_from_slice(b",\"resp_p\":");
    write_u64(out, u64::from(ev.id.resp_p));
    out.extend_from_slice(b"},\"args\":{");
    let mut first = true;
    ev.event.args(&mut |name, v| {
        if !first {
            out.push(b',');
        }
        first = false;
        json_key(out, name);
        match v {
            ArgValue::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            ArgValue::Count(c) => write_u64(out, c),
            ArgValue::Str(s) => write_json_str(out, s),
            ArgValue::StrVec(v) => {
                out.push(b'[');
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, s);
                }
                out.push(b']');
            }
        }
    });
    out.extend_from_slice(b"}}\n");
}
