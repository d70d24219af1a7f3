//! The text helpers Zeek's SMTP scripts apply to header and command values:
//! e-mail address extraction, MIME address-list splitting and IP address
//! finding (with "wrapping"). Header blocks themselves are parsed by
//! `mailtap_mime`.

use std::net::IpAddr;

// ------------------------------------------------------------ e-mail addresses

/// Zeek's `extract_email_addrs_vec`: addresses in order of appearance.
/// `(^|[<,:blank])[^<,:blank@]+@[^>,;blank]+([>,;blank]|$)` tried at every
/// position (longest match), then `<>,:;` and blanks deleted.
pub fn extract_email_addrs(s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while p < s.len() {
        match email_match_at(s, p) {
            Some(end) => {
                out.push(
                    s[p..end]
                        .iter()
                        .copied()
                        .filter(|&c| !matches!(c, b'<' | b'>' | b',' | b':' | b';' | b' ' | b'\t'))
                        .collect(),
                );
                p = end;
            }
            None => p += 1,
        }
    }
    out
}

/// Longest match of the address pattern starting exactly at `p`.
fn email_match_at(s: &[u8], p: usize) -> Option<usize> {
    let local_ok = |c: u8| !matches!(c, b'<' | b',' | b':' | b' ' | b'\t' | b'@');
    let dom_ok = |c: u8| !matches!(c, b'>' | b',' | b';' | b' ' | b'\t');
    let mut best = None;
    // `^` matches at every tried position; a delimiter may also be consumed.
    // (Two positions in an array: this runs at every byte of every
    // address argument and header, so it must not allocate.)
    let delimiter = matches!(s[p], b'<' | b',' | b':' | b' ' | b'\t');
    let starts = [p, p + 1];
    for &st in &starts[..1 + usize::from(delimiter)] {
        let l = s[st..].iter().take_while(|&&c| local_ok(c)).count();
        if l == 0 || s.get(st + l) != Some(&b'@') {
            continue;
        }
        let d0 = st + l + 1;
        let d = s[d0..].iter().take_while(|&&c| dom_ok(c)).count();
        if d == 0 {
            continue;
        }
        // Domain chars exclude the terminators, so the match ends either at
        // the end of the string or with one terminator character.
        let end = if d0 + d == s.len() {
            d0 + d
        } else {
            d0 + d + 1
        };
        best = Some(best.map_or(end, |b: usize| b.max(end)));
    }
    best
}

/// Zeek's `split_mime_email_addresses`: matches of
/// `("[^"]*")?[^,]+` with surrounding whitespace stripped, keeping only
/// parts that contain `@` the way Zeek's pattern requires.
pub fn split_mime_addresses(s: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut p = 0usize;
    while p < s.len() {
        match mime_addr_match_at(s, p) {
            Some(end) => {
                let part = strip(&s[p..end]);
                if !out.iter().any(|o| o.as_slice() == part) {
                    out.push(part.to_vec());
                }
                p = end;
            }
            None => p += 1,
        }
    }
    out
}

/// Longest match at `p` of an optional quoted string followed by one or
/// more non-comma characters that include an `@` with a non-comma on both
/// sides (Zeek's to/cc pattern as the spec describes it).
fn mime_addr_match_at(s: &[u8], p: usize) -> Option<usize> {
    let mut best = None;
    let try_from = |body: usize, best: &mut Option<usize>| {
        // [^,]+ @ [^,]+ : the longest run of non-commas, which must contain
        // an '@' that is not its first or last character.
        let run = s[body..].iter().take_while(|&&c| c != b',').count();
        let seg = &s[body..body + run];
        if seg.len() >= 3 && seg[1..seg.len() - 1].contains(&b'@') {
            let end = body + run;
            *best = Some(best.map_or(end, |b: usize| b.max(end)));
        }
    };
    try_from(p, &mut best);
    if s[p] == b'"' {
        if let Some(q) = memchr::memchr(b'"', &s[p + 1..]) {
            let after = p + 1 + q + 1;
            if after < s.len() {
                try_from(after, &mut best);
            }
        }
    }
    best
}

/// Zeek `strip`: removes leading/trailing whitespace.
fn strip(s: &[u8]) -> &[u8] {
    let ws = |c: &u8| c.is_ascii_whitespace() || *c == 0x0b;
    let a = s.iter().position(|c| !ws(c)).unwrap_or(s.len());
    let b = s.iter().rposition(|c| !ws(c)).map_or(a, |i| i + 1);
    &s[a..b.max(a)]
}

/// Removes every `ORCPT=rfc822` optionally followed by `;`.
pub fn remove_orcpt(a: &[u8]) -> Vec<u8> {
    const PAT: &[u8] = b"ORCPT=rfc822";
    let mut out = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        if a[i..].starts_with(PAT) {
            i += PAT.len();
            if a.get(i) == Some(&b';') {
                i += 1;
            }
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out
}

// ------------------------------------------------------------ IP addresses

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

// The pattern is simulated as an NFA over the positions a partial match
// can have reached. Every alternative of Zeek's address pattern is at most
// 45 bytes long, so the positions of a match starting at `p` are offsets
// 0..=45 from `p`: a set of them is one `u64` bit mask, and simulating the
// pattern allocates nothing. Offsets past 63 cannot be part of a match and
// are dropped.

/// A set of offsets from the match start.
type Ends = u64;

/// Calls `f` with each offset in `m`.
#[inline]
fn each(mut m: Ends, mut f: impl FnMut(usize)) {
    while m != 0 {
        let o = m.trailing_zeros() as usize;
        m &= m - 1;
        f(o);
    }
}

#[inline]
fn bit(o: usize) -> Ends {
    if o < 64 {
        1 << o
    } else {
        0
    }
}

/// Possible ends of a hextet (1-4 hex digits) starting at each of `from`.
fn hextet(s: &[u8], p: usize, from: Ends) -> Ends {
    let mut out = 0;
    each(from, |o| {
        for n in 1..=4 {
            match s.get(p + o + n - 1) {
                Some(&c) if is_hex(c) => out |= bit(o + n),
                _ => break,
            }
        }
    });
    out
}

fn lit(s: &[u8], p: usize, from: Ends, l: &[u8]) -> Ends {
    let mut out = 0;
    each(from, |o| {
        if s.get(p + o..).is_some_and(|t| t.starts_with(l)) {
            out |= bit(o + l.len());
        }
    });
    out
}

/// `h(:h){lo,hi}` ends.
fn hexseq(s: &[u8], p: usize, from: Ends, lo: usize, hi: usize) -> Ends {
    let mut cur = hextet(s, p, from);
    let mut out = if lo == 0 { cur } else { 0 };
    for k in 1..=hi {
        cur = hextet(s, p, lit(s, p, cur, b":"));
        if cur == 0 {
            break;
        }
        if k >= lo {
            out |= cur;
        }
    }
    out
}

/// Ends of an IPv4 decimal octet: 1-2 digits, or 3 digits ≤ 255.
fn decim(s: &[u8], p: usize, from: Ends) -> Ends {
    let mut out = 0;
    each(from, |o| {
        let d = |i: usize| s.get(p + o + i).copied().filter(u8::is_ascii_digit);
        if d(0).is_some() {
            out |= bit(o + 1);
            if d(1).is_some() {
                out |= bit(o + 2);
                if let (Some(a), Some(b), Some(c)) = (d(0), d(1), d(2)) {
                    let v =
                        u32::from(a - b'0') * 100 + u32::from(b - b'0') * 10 + u32::from(c - b'0');
                    if v <= 255 {
                        out |= bit(o + 3);
                    }
                }
            }
        }
    });
    out
}

fn ipv4(s: &[u8], p: usize, from: Ends) -> Ends {
    let mut cur = decim(s, p, from);
    for _ in 0..3 {
        cur = decim(s, p, lit(s, p, cur, b"."));
    }
    cur
}

/// `(h:){n}` ends.
fn hex_colon_n(s: &[u8], p: usize, from: Ends, n: usize) -> Ends {
    let mut cur = from;
    for _ in 0..n {
        cur = lit(s, p, hextet(s, p, cur), b":");
    }
    cur
}

/// All ends of Zeek's `ip_addr_regex` starting at `p`, as offsets from it.
fn ip_ends(s: &[u8], p: usize) -> Ends {
    let st: Ends = 1;
    let mut ends = ipv4(s, p, st);
    // ipv6_8hex: (h:){7}h
    ends |= hextet(s, p, hex_colon_n(s, p, st, 7));
    // ipv6_hex4dec: (h:){6}ipv4
    ends |= ipv4(s, p, hex_colon_n(s, p, st, 6));
    // compressed, k leading hextets before "::", up to 7-k after.
    for k in 0..=7usize {
        let lead = if k == 0 {
            st
        } else {
            hexseq_exact(s, p, st, k)
        };
        let dc = lit(s, p, lead, b"::");
        if dc == 0 {
            continue;
        }
        if k == 7 {
            ends |= dc;
            continue;
        }
        ends |= dc | hexseq(s, p, dc, 0, 6 - k);
    }
    // compressed with trailing IPv4, k leading hextets (0..=5).
    for k in 0..=5usize {
        let lead = if k == 0 {
            st
        } else {
            hexseq_exact(s, p, st, k)
        };
        let dc = lit(s, p, lead, b"::");
        if dc == 0 {
            continue;
        }
        let mids = if k == 5 {
            dc
        } else {
            dc | hexseq(s, p, dc, 0, 4 - k)
        };
        ends |= ipv4(s, p, mids);
    }
    ends
}

/// Exactly `k` hextets separated by `:`.
fn hexseq_exact(s: &[u8], p: usize, from: Ends, k: usize) -> Ends {
    let mut cur = hextet(s, p, from);
    for _ in 1..k {
        cur = hextet(s, p, lit(s, p, cur, b":"));
    }
    cur
}

/// Zeek's `extract_ip_addresses(input, check_wrapping)`.
pub fn extract_ip_addresses(s: &[u8], check_wrapping: bool) -> Vec<IpAddr> {
    // Leftmost-longest matches of the address pattern (split_string_all).
    let mut matches: Vec<(usize, usize)> = Vec::new();
    let mut p = 0usize;
    // Every character an address can contain is in [0-9A-Fa-f:.], so a
    // match lies inside one maximal run of those. A run that cannot hold
    // any alternative of the pattern is skipped whole instead of trying
    // the pattern at each of its positions (header words such as "by" or
    // "cafe", times such as 11:59:52, hex queue ids). Only plausible runs
    // pay for the full pattern.
    let mut plausible_until = 0usize;
    while p < s.len() {
        let c = s[p];
        if !(is_hex(c) || c == b':') {
            p += 1;
            continue;
        }
        if p >= plausible_until {
            let run = s[p..]
                .iter()
                .position(|&b| !(is_hex(b) || b == b':' || b == b'.'))
                .unwrap_or(s.len() - p);
            let tok = &s[p..p + run];
            // Each alternative of the pattern needs "::" (compressed
            // IPv6), six or seven ':' (full IPv6, with or without a dotted
            // tail) or three '.' (IPv4).
            let colons = tok.iter().filter(|&&b| b == b':').count();
            let dots = tok.iter().filter(|&&b| b == b'.').count();
            let plausible = colons >= 6 || dots >= 3 || tok.windows(2).any(|w| w == b"::");
            if !plausible {
                p += run;
                continue;
            }
            plausible_until = p + run;
        }
        // The longest match (leftmost-longest), if it is not empty.
        let ends = ip_ends(s, p) & !1;
        let end = (ends != 0).then(|| p + 63 - ends.leading_zeros() as usize);
        match end {
            Some(e) => {
                matches.push((p, e));
                p = e;
            }
            None => p += 1,
        }
    }
    let mut out = Vec::new();
    for (idx, &(a, b)) in matches.iter().enumerate() {
        let Some(ip) = std::str::from_utf8(&s[a..b])
            .ok()
            .and_then(|t| t.parse::<IpAddr>().ok())
        else {
            continue;
        };
        if !check_wrapping {
            out.push(ip);
            continue;
        }
        let prev_end = if idx == 0 { 0 } else { matches[idx - 1].1 };
        let next_start = matches.get(idx + 1).map_or(s.len(), |m| m.0);
        let p1 = &s[prev_end..a];
        let p3 = &s[b..next_start];
        let wrapped = (p1.is_empty() && p3.is_empty())
            || matches!(
                (p1.last(), p3.first()),
                (Some(b'['), Some(b']'))
                    | (Some(b'('), Some(b')'))
                    | (Some(b'{'), Some(b'}'))
                    | (Some(b' '), Some(b' '))
            );
        if wrapped {
            out.push(ip);
        }
    }
    out
}

/// `find_address_in_smtp_header`: the second wrapped address if there are
/// several, else the first.
pub fn received_address(value: &[u8]) -> Option<IpAddr> {
    let ips = extract_ip_addresses(value, true);
    if ips.len() > 1 {
        Some(ips[1])
    } else {
        ips.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: Vec<Vec<u8>>) -> Vec<String> {
        v.into_iter()
            .map(|x| String::from_utf8(x).unwrap())
            .collect()
    }

    #[test]
    fn email_extraction() {
        assert_eq!(
            strs(extract_email_addrs(b"FROM:<gurpartap@patriots.in>")),
            vec!["gurpartap@patriots.in"]
        );
        assert_eq!(strs(extract_email_addrs(b"FROM:<>")), Vec::<String>::new());
        assert_eq!(
            strs(extract_email_addrs(b"From:<a@b.org> BODY=8BITMIME SIZE=12")),
            vec!["a@b.org"]
        );
        assert_eq!(
            strs(extract_email_addrs(b"TO:<x@y.com> ORCPT=rfc822;x@y.com")),
            vec!["x@y.com", "ORCPT=rfc822x@y.com"]
        );
        assert_eq!(remove_orcpt(b"ORCPT=rfc822x@y.com"), b"x@y.com".to_vec());
    }

    #[test]
    fn mime_address_lists_keep_display_names() {
        let v = strs(split_mime_addresses(
            b"\"Smith, John\" <js@example.com>, Andrew Morton <akpm@linux-foundation.org>,\r\n\tno-at-here, x@y",
        ));
        assert_eq!(
            v,
            vec![
                "\"Smith, John\" <js@example.com>",
                "Andrew Morton <akpm@linux-foundation.org>",
                "x@y"
            ]
        );
        let v = strs(split_mime_addresses(b"\"Test Group\":a@b.com, c@d.com;"));
        assert_eq!(v, vec!["\"Test Group\":a@b.com", "c@d.com;"]);
    }

    #[test]
    fn ip_extraction_wrapping() {
        let ips = extract_ip_addresses(
            b"from GP ([122.162.143.157]) by xc90 with esmtpa (Exim 4.69)",
            true,
        );
        assert_eq!(ips, vec!["122.162.143.157".parse::<IpAddr>().unwrap()]);
        let v = b"from a.example (a.example [10.0.0.1]) by b (1.2.3.4) with SMTP";
        assert_eq!(received_address(v), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(received_address(b"from x ([IPv6:2001:db8::1]) by y"), None);
        assert_eq!(
            received_address(b"10.1.1.1"),
            Some("10.1.1.1".parse().unwrap())
        );
        assert_eq!(
            extract_ip_addresses(b"X 2001:db8::5 Y", false),
            vec!["2001:db8::5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            extract_ip_addresses(b"v1.2.3.4x", false),
            vec!["1.2.3.4".parse::<IpAddr>().unwrap()]
        );
        assert!(extract_ip_addresses(b"version 1.2.3.4.5", true).is_empty());
    }
}

#[cfg(test)]
mod prefilter_tests {
    use super::extract_ip_addresses;
    use std::net::IpAddr;

    fn ips(s: &str, wrap: bool) -> Vec<IpAddr> {
        extract_ip_addresses(s.as_bytes(), wrap)
    }

    #[test]
    fn skipped_runs_do_not_hide_addresses() {
        let hdr = "from mx.cafe.example (mx [10.1.2.3]) by beef.example ([2001:db8::1]) \
                   with ESMTP id 7f3f1ed92c8c8fe7; Fri, 01 Mar 2024 11:59:52 +0000";
        assert_eq!(
            ips(hdr, true),
            vec![
                "10.1.2.3".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(
            ips("at 11:59:52 and 1:2:3:4:5:6:7:8 dead:beef", false),
            vec!["1:2:3:4:5:6:7:8".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            ips("x ::ffff:192.0.2.1 y", false),
            vec!["::ffff:192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert!(ips("version 1.2.3 and a.b.c", false).is_empty());
    }
}
