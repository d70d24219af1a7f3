//! Content-transfer decoders with Zeek's lenient rules. Both work line by
//! line (lines arrive without their terminator) and append to a caller's
//! buffer; problems are reported as `(weird addl)` strings.

/// Zeek's `Base64Converter`: characters outside the alphabet are skipped,
/// groups after `=` padding are ignored, an incomplete last group is
/// zero-padded. Only the first problem of an entity is reported, except
/// the incomplete final group, which always is.
#[derive(Clone, Debug, Default)]
pub struct Base64 {
    group: [u8; 4],
    n: usize,
    /// A group with `=` padding has been completed.
    padded: bool,
    /// The first problem has been reported.
    reported: bool,
}

/// Alphabet values; 0xff for everything else (including `=`).
static B64: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0usize;
    while i < 64 {
        let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i];
        t[c as usize] = i as u8;
        i += 1;
    }
    t
};

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

impl Base64 {
    pub fn new() -> Self {
        Self::default()
    }

    fn problem(&mut self, problems: &mut Vec<String>, make: impl FnOnce() -> String) {
        if !self.reported {
            self.reported = true;
            problems.push(make());
        }
    }

    /// Decodes one line; problems go to `problems`.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>, problems: &mut Vec<String>) {
        let mut line = line;
        if self.n == 0 && !self.padded {
            // Fast path: whole groups of alphabet characters.
            let full = line.len() / 4 * 4;
            out.reserve(full / 4 * 3);
            let mut i = 0usize;
            while i < full {
                let g = &line[i..i + 4];
                let (a, b, c, d) = (
                    B64[usize::from(g[0])],
                    B64[usize::from(g[1])],
                    B64[usize::from(g[2])],
                    B64[usize::from(g[3])],
                );
                if (a | b | c | d) & 0x80 != 0 {
                    break;
                }
                let v = (u32::from(a) << 18)
                    | (u32::from(b) << 12)
                    | (u32::from(c) << 6)
                    | u32::from(d);
                out.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                i += 4;
            }
            line = &line[i..];
        }
        for &c in line {
            let is_pad = c == b'=';
            if !is_pad && b64_value(c).is_none() {
                self.problem(problems, || {
                    format!("character {c} ignored by Base64 decoding")
                });
                continue;
            }
            if self.padded {
                self.problem(problems, || {
                    "extra base64 groups after '=' padding are ignored".to_string()
                });
                continue;
            }
            self.group[self.n] = c;
            self.n += 1;
            if self.n == 4 {
                self.flush_group(out);
            }
        }
    }

    fn flush_group(&mut self, out: &mut Vec<u8>) {
        let g = self.group;
        self.n = 0;
        let pads = g.iter().rev().take_while(|&&c| c == b'=').count();
        let mut v = 0u32;
        for &c in &g {
            v = (v << 6) | u32::from(b64_value(c).unwrap_or(0));
        }
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        let keep = 3usize.saturating_sub(pads);
        out.extend_from_slice(&bytes[..keep]);
        if g.contains(&b'=') {
            self.padded = true;
        }
    }

    /// End of the entity: an incomplete group is zero-padded.
    pub fn finish(&mut self, out: &mut Vec<u8>, problems: &mut Vec<String>) {
        if self.n > 0 {
            problems.push(format!(
                "incomplete base64 group, padding with {} bits of 0",
                (4 - self.n) * 6
            ));
            for i in self.n..4 {
                self.group[i] = b'=';
            }
            self.n = 4;
            self.flush_group(out);
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable decoding of one line. Trailing blanks are removed, a
/// final `=` is a soft break, `=XY` decodes, anything else stays literal
/// (counted in `illegal`). A CRLF follows unless the line was a soft break.
pub fn qp_line(line: &[u8], out: &mut Vec<u8>, illegal: &mut u64) {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b' ' || line[end - 1] == b'\t') {
        end -= 1;
    }
    let line = &line[..end];
    let mut i = 0usize;
    let mut soft = false;
    while i < line.len() {
        let c = line[i];
        if c == b'=' {
            if i + 1 == line.len() {
                soft = true;
                break;
            }
            let hi = line.get(i + 1).copied().and_then(hex_val);
            let lo = line.get(i + 2).copied().and_then(hex_val);
            if let (Some(h), Some(l)) = (hi, lo) {
                out.push((h << 4) | l);
                i += 3;
                continue;
            }
            *illegal += 1;
            out.push(c);
        } else {
            if !(c == b'\t' || (32..127).contains(&c)) {
                *illegal += 1;
            }
            out.push(c);
        }
        i += 1;
    }
    if !soft {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(lines: &[&[u8]]) -> (Vec<u8>, Vec<String>) {
        let mut d = Base64::new();
        let mut out = Vec::new();
        let mut p = Vec::new();
        for l in lines {
            d.line(l, &mut out, &mut p);
        }
        d.finish(&mut out, &mut p);
        (out, p)
    }

    #[test]
    fn base64_plain_and_split_groups() {
        assert_eq!(b64(&[b"SGVsbG8s", b"IHdvcmxk"]).0, b"Hello, world");
        assert_eq!(b64(&[b"SGV", b"sbG8="]).0, b"Hello");
        assert!(b64(&[b"SGVsbG8="]).1.is_empty());
    }

    #[test]
    fn base64_illegal_character_reported_once() {
        let (o, p) = b64(&[b"SGVs bG8h", b"SG*Vs"]);
        assert_eq!(o, b"Hello!Hel");
        assert_eq!(p, vec!["character 32 ignored by Base64 decoding"]);
    }

    #[test]
    fn base64_groups_after_padding_ignored() {
        let (o, p) = b64(&[b"SGk=SGk="]);
        assert_eq!(o, b"Hi");
        assert_eq!(p, vec!["extra base64 groups after '=' padding are ignored"]);
    }

    #[test]
    fn base64_incomplete_group_padded() {
        let (o, p) = b64(&[b"SGVsbG8"]);
        assert_eq!(o, b"Hello");
        assert_eq!(p, vec!["incomplete base64 group, padding with 6 bits of 0"]);
        let (o, p) = b64(&[b"SG"]);
        assert_eq!(o, b"H");
        assert_eq!(
            p,
            vec!["incomplete base64 group, padding with 12 bits of 0"]
        );
    }

    #[test]
    fn qp_rules() {
        let mut out = Vec::new();
        let mut ill = 0;
        qp_line(b"a=3Db=3d  ", &mut out, &mut ill);
        qp_line(b"soft=", &mut out, &mut ill);
        qp_line(b"=ZZ=4", &mut out, &mut ill);
        assert_eq!(out, b"a=b=\r\nsoft=ZZ=4\r\n");
        assert_eq!(ill, 2);
        out.clear();
        ill = 0;
        qp_line(b"caf\xe9", &mut out, &mut ill);
        assert_eq!(out, b"caf\xe9\r\n");
        assert_eq!(ill, 1);
    }
}
