//! Vocabulary and small formatting helpers (base64, hex, RFC 5322 dates).

pub(crate) const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "xena", "yusuf",
    "zoe", "amelie", "bjorn", "chen", "dmitri", "elif", "fatima", "gunnar", "hiroshi",
];

pub(crate) const LAST: &[&str] = &[
    "smith",
    "jones",
    "garcia",
    "mueller",
    "rossi",
    "dubois",
    "novak",
    "kowalski",
    "tanaka",
    "kim",
    "nguyen",
    "silva",
    "olsen",
    "jansen",
    "murphy",
    "ivanova",
    "haddad",
    "okafor",
    "lindqvist",
    "moreau",
];

pub(crate) const DOMAINS: &[&str] = &[
    "example.com",
    "example.net",
    "example.org",
    "mail.example.com",
    "corp.example",
    "acme.test",
    "initech.test",
    "globex.test",
    "umbrella.test",
    "hooli.test",
    "contoso.example",
    "fabrikam.example",
    "wayne.example",
    "stark.example",
    "tyrell.example",
    "cyberdyne.test",
    "aperture.test",
    "soylent.test",
    "vandelay.test",
    "wonka.example",
];

pub(crate) const MAILERS: &[(&str, &str)] = &[
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0",
    ),
    ("User-Agent", "Mutt/2.2.12 (2023-09-09)"),
    ("User-Agent", "Roundcube Webmail/1.6.5"),
    ("User-Agent", "SquirrelMail/1.4.22"),
    ("X-Mailer", "Microsoft Outlook 16.0"),
    ("X-Mailer", "Apple Mail (2.3731.700.6)"),
    (
        "X-Mailer",
        "PHPMailer 6.8.1 (https://github.com/PHPMailer/PHPMailer)",
    ),
    ("X-Mailer", "git-send-email 2.43.0"),
];

pub(crate) const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "at",
    "from",
    "have",
    "or",
    "an",
    "but",
    "which",
    "report",
    "meeting",
    "budget",
    "quarter",
    "invoice",
    "attached",
    "please",
    "review",
    "project",
    "deadline",
    "schedule",
    "update",
    "status",
    "network",
    "server",
    "traffic",
    "analysis",
    "capture",
    "packet",
    "message",
    "delivery",
    "customer",
    "contract",
    "proposal",
    "draft",
    "final",
    "version",
    "team",
    "office",
    "tomorrow",
    "monday",
    "friday",
    "thanks",
    "regards",
    "question",
    "answer",
    "issue",
    "ticket",
    "release",
    "deploy",
    "backup",
    "storage",
    "latency",
    "throughput",
    "window",
    "sensor",
    "alert",
    "policy",
    "security",
    "access",
    "account",
    "password",
    "reset",
    "travel",
    "hotel",
    "flight",
    "agenda",
    "minutes",
    "summary",
    "figures",
    "numbers",
    "forecast",
    "revenue",
    "costs",
    "coffee",
    "lunch",
    "weekend",
    "holiday",
    "vacation",
    "café",
    "naïve",
    "Grüße",
    "señor",
    "Zürich",
    "über",
    "déjà",
    "vu",
    "résumé",
    "smörgåsbord",
    "東京",
    "数据",
    "привет",
    "ελληνικά",
    "2024",
    "42",
    "v1.2.3",
    "ACK",
    "SMTP",
    "TCP",
    "MIME",
    "(see",
    "below)",
    "e.g.",
    "i.e.",
    "etc.",
    "OK,",
    "yes.",
    "no.",
    "maybe?",
    "re:",
];

pub(crate) const SUBJECTS_UTF8: &[&str] = &[
    "Réunion de l'équipe — ordre du jour",
    "Grüße aus Zürich",
    "Предложение по проекту",
    "会议纪要 第三季度",
    "Café ☕ à 15h ?",
    "Ελληνικά: ενημέρωση",
    "Überweisung bestätigt ✓",
];

/// ISO-8859-1 quoted-printable encoded words and their UTF-8 text.
pub(crate) const SUBJECTS_LATIN1: &[(&str, &str)] = &[
    (
        "=?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=",
        "Grüße aus München",
    ),
    (
        "=?iso-8859-1?q?R=E9union_d=27=E9quipe_=E0_10h?=",
        "Réunion d'équipe à 10h",
    ),
    (
        "=?ISO-8859-1?Q?Se=F1or_Pe=F1a=2C_factura_n=BA_42?=",
        "Señor Peña, factura nº 42",
    ),
];

/// Appends the standard (padded) base64 encoding of `data` to `out`.
pub(crate) fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine as _;
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .expect("room for the padded encoding");
    out.truncate(start + n);
}

pub(crate) fn hex_into(out: &mut Vec<u8>, mut v: u64, digits: usize, upper: bool) {
    let tab: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let start = out.len();
    out.resize(start + digits, b'0');
    for i in (0..digits).rev() {
        out[start + i] = tab[(v & 15) as usize];
        v >>= 4;
    }
}

/// Days since 1970-01-01 to (year, month, day) — H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends an RFC 5322 date such as `Fri, 01 Mar 2024 12:00:00 +0000`.
pub(crate) fn rfc5322_date(out: &mut Vec<u8>, micros: u64) {
    use std::io::Write;
    const DOW: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = (micros / 1_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let dow = (days + 4).rem_euclid(7) as usize;
    let _ = write!(
        out,
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DOW[dow],
        d,
        MON[m as usize - 1],
        y,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64() {
        let mut o = Vec::new();
        base64_into(&mut o, b"\0user\0pass");
        assert_eq!(o, b"AHVzZXIAcGFzcw==");
        o.clear();
        base64_into(&mut o, b"Username:");
        assert_eq!(o, b"VXNlcm5hbWU6");
        o.clear();
        base64_into(&mut o, b"ab");
        assert_eq!(o, b"YWI=");
    }

    #[test]
    fn dates() {
        let mut o = Vec::new();
        rfc5322_date(&mut o, 1_709_294_400_000_000);
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "Fri, 01 Mar 2024 12:00:00 +0000"
        );
        let mut o = Vec::new();
        rfc5322_date(&mut o, 0);
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
    }

    #[test]
    fn hex() {
        let mut o = Vec::new();
        hex_into(&mut o, 0xBEEF, 6, true);
        assert_eq!(o, b"00BEEF");
    }
}
