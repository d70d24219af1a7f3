//! Byte-string escaping for the Zeek ASCII and JSON writers.
//!
//! Zeek strings are arbitrary bytes. Both writers pass valid, printable
//! multi-byte UTF-8 through and escape everything else as `\xNN`; they differ
//! in the details documented on [`write_zeek_str`] and [`write_json_str`].

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `\xNN` (lower-case hex) for `b`.
#[inline]
pub(crate) fn push_hex_escape(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
}

/// Length of the valid UTF-8 sequence of a printable, non-ASCII character at
/// the start of `b`, or 0 if `b` does not start with one.
///
/// Like Zeek, C1 control characters (U+0080..U+009F), the Private Use Area
/// (U+E000..U+F8FF) and the Specials block (U+FFF0..U+FFFF) count as not
/// printable and are escaped byte by byte; so are overlong forms, surrogates
/// and truncated sequences.
#[inline]
pub(crate) fn utf8_printable_len(b: &[u8]) -> usize {
    let n = match b.first() {
        Some(0xC2..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return 0,
    };
    let Some(seq) = b.get(..n) else { return 0 };
    let Ok(s) = std::str::from_utf8(seq) else {
        return 0;
    };
    let c = s.chars().next().map_or(0, u32::from);
    if (0x80..=0x9F).contains(&c)
        || (0xE000..=0xF8FF).contains(&c)
        || (0xFFF0..=0xFFFF).contains(&c)
    {
        return 0;
    }
    n
}

/// True for bytes the ASCII writer copies as they are (outside containers).
#[inline]
fn zeek_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'\\'
}

/// True if each of the eight bytes of `w` is plain (`zeek_plain`, and not
/// `,` in a container). Exact: no byte needing an escape passes.
#[inline]
fn all_plain8(w: u64, in_container: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    // A byte >= 0x80, or one that becomes >= 0x80 when 1 is added (0x7f).
    // A carry out of a 0xff byte only happens when that byte is already
    // flagged by its own high bit.
    if (w | w.wrapping_add(ONES)) & HIGH != 0 {
        return false;
    }
    // Every byte is below 0x7f here: one below 0x20 borrows into its high
    // bit when 0x20 is subtracted.
    if w.wrapping_sub(0x20 * ONES) & !w & HIGH != 0 {
        return false;
    }
    if has_zero(w ^ (u64::from(b'\\') * ONES)) {
        return false;
    }
    !(in_container && has_zero(w ^ (u64::from(b',') * ONES)))
}

/// Writes one Zeek `string` value the way Zeek's ASCII writer does:
///
/// * empty → `(empty)`;
/// * a value that is exactly `-` or `(empty)` gets its first byte escaped
///   (`\x2d`, `\x28empty)`) so it cannot be confused with the markers;
/// * printable ASCII is copied, except `\` which is doubled (`\\`);
/// * inside a set/vector (`in_container`) a `,` becomes `\x2c`;
/// * valid printable multi-byte UTF-8 is copied (Zeek's default
///   `LogAscii::enable_utf_8=T`);
/// * every other byte (controls incl. TAB, DEL, invalid UTF-8) → `\xNN`.
///
/// The escaping is per character: one invalid byte does not affect how its
/// neighbours are written, so the output always unescapes to the input.
pub(crate) fn write_zeek_str(out: &mut Vec<u8>, s: &[u8], in_container: bool) {
    if s.is_empty() {
        out.extend_from_slice(b"(empty)");
        return;
    }
    let mut i = 0;
    if s == b"-" || s == b"(empty)" {
        push_hex_escape(out, s[0]);
        i = 1;
    }
    while i < s.len() {
        let b = s[i];
        if zeek_plain(b) && !(in_container && b == b',') {
            let start = i;
            i += 1;
            // Most values are plain ASCII: skip eight plain bytes at a time.
            while let Some(chunk) = s.get(i..i + 8) {
                let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                if !all_plain8(word, in_container) {
                    break;
                }
                i += 8;
            }
            while i < s.len() && zeek_plain(s[i]) && !(in_container && s[i] == b',') {
                i += 1;
            }
            out.extend_from_slice(&s[start..i]);
            continue;
        }
        if b >= 0x80 {
            let n = utf8_printable_len(&s[i..]);
            if n > 0 {
                out.extend_from_slice(&s[i..i + n]);
                i += n;
                continue;
            }
        }
        if b == b'\\' {
            // Zeek 8.2.2 writes a backslash doubled (x509.log subjects
            // such as `O=VeriSign\\, Inc.` in Zeek's TLS test outputs).
            out.extend_from_slice(b"\\\\");
        } else {
            push_hex_escape(out, b);
        }
        i += 1;
    }
}

/// True if `s` has a byte >= 0x80 that is not part of a printable UTF-8
/// character (see [`utf8_printable_len`]).
fn has_bad_utf8(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] < 0x80 {
            i += 1;
            continue;
        }
        let n = utf8_printable_len(&s[i..]);
        if n == 0 {
            return true;
        }
        i += n;
    }
    false
}

/// Writes `s` as a JSON string literal (with the quotes), the way Zeek's
/// JSON writer does:
///
/// * if every non-ASCII byte belongs to a valid, printable UTF-8 character,
///   the UTF-8 is copied as is;
/// * otherwise (Zeek's `json_escape_utf8` fallback) *every* non-ASCII byte of
///   the string, including those of otherwise valid characters, is written
///   as the four characters `\xNN`, which in JSON text reads `\\xNN`;
/// * `"` and `\` are escaped as `\"` and `\\`; control characters use the
///   short JSON escapes (`\b \f \n \r \t`) or `\u00NN` (Zeek >= 8.1; older
///   versions wrote `\\xNN` for them), DEL included.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let bad = has_bad_utf8(s);
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => {
                let start = i;
                while i + 1 < s.len()
                    && matches!(s[i + 1], 0x20..=0x7e)
                    && !matches!(s[i + 1], b'"' | b'\\')
                {
                    i += 1;
                }
                out.extend_from_slice(&s[start..=i]);
            }
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1f | 0x7f => {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            }
            0x80..=0xff => {
                if bad {
                    out.extend_from_slice(&[
                        b'\\',
                        b'\\',
                        b'x',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 0xf) as usize],
                    ]);
                } else {
                    // Not bad: this byte starts a valid printable character.
                    let n = utf8_printable_len(&s[i..]).max(1);
                    out.extend_from_slice(&s[i..i + n]);
                    i += n;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight-byte fast path agrees with the byte-by-byte rule for every
    /// byte value at every position of a chunk, in and out of containers.
    #[test]
    fn fast_path_escapes_exactly_what_the_byte_rule_escapes() {
        for in_container in [false, true] {
            for b in 0..=255u8 {
                for pos in 0..20 {
                    let mut s = b"abcdefghijklmnopqrst".to_vec();
                    s[pos] = b;
                    let mut out = Vec::new();
                    write_zeek_str(&mut out, &s, in_container);
                    let mut want = Vec::new();
                    for &c in &s {
                        if zeek_plain(c) && !(in_container && c == b',') {
                            want.push(c);
                        } else if c == b'\\' {
                            want.extend_from_slice(b"\\\\");
                        } else {
                            push_hex_escape(&mut want, c);
                        }
                    }
                    assert_eq!(out, want, "byte {b:#x} at {pos}, container {in_container}");
                }
            }
        }
    }

    fn z(s: &[u8], c: bool) -> String {
        let mut o = Vec::new();
        write_zeek_str(&mut o, s, c);
        String::from_utf8(o).unwrap()
    }
    fn j(s: &[u8]) -> String {
        let mut o = Vec::new();
        write_json_str(&mut o, s);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn zeek_rules() {
        assert_eq!(z(b"", false), "(empty)");
        assert_eq!(z(b"-", false), "\\x2d");
        assert_eq!(z(b"(empty)", false), "\\x28empty)");
        assert_eq!(z(b"--", false), "--");
        assert_eq!(z(b"x(empty)", false), "x(empty)");
        assert_eq!(z(b"a\\b", false), "a\\\\b");
        assert_eq!(z(b"a\tb", false), "a\\x09b");
        assert_eq!(z(b"a,b", false), "a,b");
        assert_eq!(z(b"a,b", true), "a\\x2cb");
        assert_eq!(z(b"\x00\x1f\x7f", false), "\\x00\\x1f\\x7f");
        assert_eq!(z(b"\r\n", false), "\\x0d\\x0a");
        assert_eq!(z("grüße €𝄞".as_bytes(), false), "grüße €𝄞");
        assert_eq!(z(b"\xff", false), "\\xff");
        // Invalid bytes are escaped one by one; valid neighbours stay.
        assert_eq!(z(b"\xc3\xb1\xc0\x81", false), "ñ\\xc0\\x81");
        assert_eq!(z(b"\xc3(", false), "\\xc3(");
        assert_eq!(z(b"\xe2\x82", false), "\\xe2\\x82");
        assert_eq!(z(b"\xed\xa0\x80", false), "\\xed\\xa0\\x80"); // surrogate
        assert_eq!(z(b"\xc2\x85", false), "\\xc2\\x85"); // C1 control
        assert_eq!(z(b"\xee\x8b\xa0", false), "\\xee\\x8b\\xa0"); // private use
    }

    #[test]
    fn json_rules() {
        assert_eq!(j(b""), r#""""#);
        assert_eq!(j(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(j(b"-"), r#""-""#);
        assert_eq!(j(b"\x08\x0c\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(j(b"\x00\x07\x7f"), r#""\u0000\u0007\u007f""#);
        assert_eq!(j("ñ €".as_bytes()), "\"ñ €\"");
        assert_eq!(j(b"string\x82"), r#""string\\x82""#);
        // One bad byte escapes every non-ASCII byte of the string (Zeek).
        assert_eq!(j(b"\xc3\xb1\xc0\x81"), r#""\\xc3\\xb1\\xc0\\x81""#);
        assert_eq!(j(b"\xe2\x28\xa1"), r#""\\xe2(\\xa1""#);
        assert_eq!(j(b"\xee\x8b\xa0"), r#""\\xee\\x8b\\xa0""#);
    }
}
