//! ACE's SMTP collector parser (`saq/bro.py: parse_bro_smtp`) as the spec
//! (shared/spec/ace-smtp-collector.md §2.2) describes it, written from the
//! rules, defects included, so tests can show that an unchanged ACE
//! collector reads mailtap's transcripts. Not mailtap's parser.

#![allow(dead_code)]

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AceEmail {
    pub source_ip: Option<String>,
    /// Kept as a string, as ACE does.
    pub source_port: Option<String>,
    pub envelope_from: Option<String>,
    pub envelope_to: Vec<String>,
    /// Header epoch, or the fallback (ACE: file mtime).
    pub received: i64,
    pub content: String,
}

/// Text mode with decoding errors ignored: bytes that are not UTF-8 are
/// dropped.
fn decode_ignore(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace('\u{FFFD}', "")
}

/// Lines with their LF, like iterating a Python text file.
fn lines(t: &str) -> Vec<&str> {
    t.split_inclusive('\n').collect()
}

/// `^([^:]+):(\d+).*$` on line 1.
fn header(l: &str) -> Option<(String, String)> {
    let l = l.strip_suffix('\n').unwrap_or(l);
    let (ip, rest) = l.split_once(':')?;
    if ip.is_empty() {
        return None;
    }
    let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if port.is_empty() {
        return None;
    }
    Some((ip.to_string(), port))
}

/// `^> MAIL FROM:<(.+)>` (greedy): the text between the brackets.
fn bracketed(l: &str, prefix: &str) -> Option<String> {
    let rest = l.strip_prefix(prefix)?;
    let end = rest.rfind('>')?;
    (end >= 1).then(|| rest[..end].to_string())
}

/// Parses a session file; `Err` where ACE raises (line 2 not an integer).
pub fn parse(bytes: &[u8], mtime: i64) -> Result<Vec<AceEmail>, String> {
    let text = decode_ignore(bytes);
    let ls = lines(&text);
    let mut i = 0;
    let (mut ip, mut port, mut received) = (None, None, mtime);
    let mut pending_first: Option<&str> = None;
    if let Some(l1) = ls.first() {
        match header(l1) {
            Some((a, p)) => {
                ip = Some(a);
                port = Some(p);
                let l2 = ls.get(1).ok_or("no line 2")?;
                received = l2
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("line 2 not an int: {l2:?}"))?;
                i = 2;
            }
            None => {
                pending_first = Some(l1);
                i = 1;
            }
        }
    }
    let mut out = Vec::new();
    let mut in_data = false;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut content = String::new();
    let rest: Vec<&str> = pending_first
        .into_iter()
        .chain(ls[i.min(ls.len())..].iter().copied())
        .collect();
    for line in rest {
        if !in_data {
            if let Some(a) = bracketed(line, "> MAIL FROM:<") {
                from = Some(a);
            } else if let Some(a) = bracketed(line, "> RCPT TO:<") {
                to.push(a);
            } else if line.starts_with("< DATA 354")
                || !(line.starts_with('<') || line.starts_with('>'))
            {
                in_data = true;
                content.clear();
            } else if line.starts_with("> RSET") || line.starts_with("< RSET") {
                from = None;
                to.clear();
            }
            continue;
        }
        if line.trim() == "> . ." {
            out.push(AceEmail {
                source_ip: ip.clone(),
                source_port: port.clone(),
                envelope_from: from.take(),
                envelope_to: std::mem::take(&mut to),
                received,
                content: std::mem::take(&mut content),
            });
            in_data = false;
            continue;
        }
        content.push_str(line);
    }
    if in_data {
        out.push(AceEmail {
            source_ip: ip,
            source_port: port,
            envelope_from: from,
            envelope_to: to,
            received,
            content,
        });
    }
    Ok(out)
}
