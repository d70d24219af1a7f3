//! Pure parsing of single SMTP lines: the command word and argument of a
//! client line, the code/continuation/text of a server reply, and the BDAT
//! argument (RFC 3030) with Zeek's exact error strings.

/// SMTP command codes; the names double as Zeek's names in events and
/// `smtp_unexpected` details (underscored spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Quit,
    Rset,
    Vrfy,
    Expn,
    Help,
    Noop,
    Starttls,
    XAnonymousTls,
    ConnEstablishment,
    EndOfData,
    Send,
    Soml,
    Saml,
    Turn,
    Bdat,
    Etrn,
    Auth,
    AuthAnswer,
}

const CMD_NAMES: &[(&str, Cmd)] = &[
    ("EHLO", Cmd::Ehlo),
    ("HELO", Cmd::Helo),
    ("MAIL", Cmd::Mail),
    ("RCPT", Cmd::Rcpt),
    ("DATA", Cmd::Data),
    ("QUIT", Cmd::Quit),
    ("RSET", Cmd::Rset),
    ("VRFY", Cmd::Vrfy),
    ("EXPN", Cmd::Expn),
    ("HELP", Cmd::Help),
    ("NOOP", Cmd::Noop),
    ("STARTTLS", Cmd::Starttls),
    ("X_ANONYMOUSTLS", Cmd::XAnonymousTls),
    ("CONN_ESTABLISHMENT", Cmd::ConnEstablishment),
    ("END_OF_DATA", Cmd::EndOfData),
    ("SEND", Cmd::Send),
    ("SOML", Cmd::Soml),
    ("SAML", Cmd::Saml),
    ("TURN", Cmd::Turn),
    ("BDAT", Cmd::Bdat),
    ("ETRN", Cmd::Etrn),
    ("AUTH", Cmd::Auth),
    ("AUTH_ANSWER", Cmd::AuthAnswer),
];

impl Cmd {
    /// Zeek's internal name (`END_OF_DATA`, `X_ANONYMOUSTLS`, ...).
    pub fn name(self) -> &'static str {
        CMD_NAMES
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .unwrap_or("(UNKNOWN)")
    }

    /// Name used as `cmd` in `smtp_reply`.
    pub fn reply_name(cmd: Option<Cmd>) -> &'static str {
        match cmd {
            Some(Cmd::ConnEstablishment) => ">",
            Some(Cmd::EndOfData) => ".",
            Some(c) => c.name(),
            None => "(UNKNOWN)",
        }
    }

    /// Matches a command word case-insensitively and exactly. The internal
    /// names are accepted too (a Zeek quirk), plus `X-ANONYMOUSTLS`.
    pub fn parse(word: &[u8]) -> Option<Cmd> {
        if word.eq_ignore_ascii_case(b"X-ANONYMOUSTLS") {
            return Some(Cmd::XAnonymousTls);
        }
        CMD_NAMES
            .iter()
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(word))
            .map(|(_, c)| *c)
    }
}

/// Splits a command line into the command word and its argument: the word
/// runs up to the first whitespace or NUL; the argument follows after
/// spaces/tabs, trailing whitespace kept.
pub fn split_command(line: &[u8]) -> (&[u8], &[u8]) {
    let end = line
        .iter()
        .position(|&c| matches!(c, b' ' | b'\t' | 0x0b | 0x0c | b'\r' | b'\n' | 0))
        .unwrap_or(line.len());
    let (word, rest) = line.split_at(end);
    (word, skip_blanks(rest))
}

/// Skips leading spaces and tabs.
pub fn skip_blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    &s[n..]
}

/// A server line.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyLine<'a> {
    /// Valid code: `cont` is true for `NNN-` lines; `msg` the text.
    Reply {
        code: u16,
        cont: bool,
        msg: &'a [u8],
    },
    /// No three leading digits, or a code outside 100..=599.
    OutOfRange,
}

/// Parses a server reply line.
pub fn parse_reply(line: &[u8]) -> ReplyLine<'_> {
    let code = match line.get(..3) {
        Some(d) if d.iter().all(u8::is_ascii_digit) => {
            u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0')
        }
        _ => return ReplyLine::OutOfRange,
    };
    if !(100..=599).contains(&code) {
        return ReplyLine::OutOfRange;
    }
    let cont = line.get(3) == Some(&b'-');
    let after = if cont { &line[4..] } else { &line[3..] };
    ReplyLine::Reply {
        code,
        cont,
        msg: skip_blanks(after),
    }
}

/// Why a BDAT argument was rejected; `text()` is Zeek's weird addl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BdatArgError {
    BadLength,
    NotFollowedBySize,
    SizeNotValid,
    SizeTooLarge,
    FollowedByJunk,
}

impl BdatArgError {
    pub fn text(self) -> &'static str {
        match self {
            BdatArgError::BadLength => "BDAT argument bad length",
            BdatArgError::NotFollowedBySize => "BDAT not followed by a valid chunk-size",
            BdatArgError::SizeNotValid => "BDAT chunk-size not valid",
            BdatArgError::SizeTooLarge => "BDAT chunk-size too large",
            BdatArgError::FollowedByJunk => "BDAT chunk-size followed by junk",
        }
    }
}

/// A parsed BDAT argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BdatArg {
    pub size: u64,
    pub last: bool,
}

/// `strlen("18446744073709551615 LAST")`: the longest valid argument.
const BDAT_MAX_ARG: usize = 25;

/// Parses `<size>[ LAST]` (LAST case-insensitive) the way Zeek does.
pub fn parse_bdat_arg(arg: &[u8]) -> Result<BdatArg, BdatArgError> {
    if arg.is_empty() || arg.len() > BDAT_MAX_ARG {
        return Err(BdatArgError::BadLength);
    }
    if !arg[0].is_ascii_digit() {
        return Err(BdatArgError::NotFollowedBySize);
    }
    let digits = arg.iter().take_while(|c| c.is_ascii_digit()).count();
    let rest = &arg[digits..];
    // strtoull stops at the first non-digit; only a space or the end
    // (or an embedded NUL, which ends the C string) may follow.
    if let Some(&c) = rest.first() {
        if c != b' ' && c != 0 {
            return Err(BdatArgError::SizeNotValid);
        }
    }
    let mut size: u64 = 0;
    for &d in &arg[..digits] {
        size = size
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
            .ok_or(BdatArgError::SizeTooLarge)?;
    }
    if rest.is_empty() {
        return Ok(BdatArg { size, last: false });
    }
    let last = rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b" LAST");
    if !last || rest.len() != 5 {
        return Err(BdatArgError::FollowedByJunk);
    }
    Ok(BdatArg { size, last: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words() {
        assert_eq!(
            split_command(b"MAIL FROM:<a@b> "),
            (b"MAIL".as_slice(), b"FROM:<a@b> ".as_slice())
        );
        assert_eq!(split_command(b"QUIT"), (b"QUIT".as_slice(), b"".as_slice()));
        assert_eq!(split_command(b" x"), (b"".as_slice(), b"x".as_slice()));
        assert_eq!(Cmd::parse(b"ehlo"), Some(Cmd::Ehlo));
        assert_eq!(Cmd::parse(b"x-anonymoustls"), Some(Cmd::XAnonymousTls));
        assert_eq!(Cmd::parse(b"END_OF_DATA"), Some(Cmd::EndOfData));
        assert_eq!(Cmd::parse(b"MAILX"), None);
        assert_eq!(Cmd::reply_name(None), "(UNKNOWN)");
        assert_eq!(Cmd::reply_name(Some(Cmd::AuthAnswer)), "AUTH_ANSWER");
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(b"250-PIPELINING"),
            ReplyLine::Reply {
                code: 250,
                cont: true,
                msg: b"PIPELINING"
            }
        );
        assert_eq!(
            parse_reply(b"250"),
            ReplyLine::Reply {
                code: 250,
                cont: false,
                msg: b""
            }
        );
        assert_eq!(
            parse_reply(b"250OK"),
            ReplyLine::Reply {
                code: 250,
                cont: false,
                msg: b"OK"
            }
        );
        assert_eq!(
            parse_reply(b"220  x "),
            ReplyLine::Reply {
                code: 220,
                cont: false,
                msg: b"x "
            }
        );
        assert_eq!(parse_reply(b"099 x"), ReplyLine::OutOfRange);
        assert_eq!(parse_reply(b"600 x"), ReplyLine::OutOfRange);
        assert_eq!(parse_reply(b"2x0"), ReplyLine::OutOfRange);
        assert_eq!(parse_reply(b"25"), ReplyLine::OutOfRange);
    }

    #[test]
    fn bdat_args_match_zeek_cases() {
        use BdatArgError::*;
        assert_eq!(
            parse_bdat_arg(b"86 LAST"),
            Ok(BdatArg {
                size: 86,
                last: true
            })
        );
        assert_eq!(
            parse_bdat_arg(b"86 last"),
            Ok(BdatArg {
                size: 86,
                last: true
            })
        );
        assert_eq!(
            parse_bdat_arg(b"86"),
            Ok(BdatArg {
                size: 86,
                last: false
            })
        );
        assert_eq!(
            parse_bdat_arg(b"0 LAST"),
            Ok(BdatArg {
                size: 0,
                last: true
            })
        );
        assert_eq!(parse_bdat_arg(b""), Err(BadLength));
        assert_eq!(parse_bdat_arg(b" 86 LAST"), Err(NotFollowedBySize));
        assert_eq!(parse_bdat_arg(b"SCRAMBLE"), Err(NotFollowedBySize));
        assert_eq!(parse_bdat_arg(b"-1 LAST"), Err(NotFollowedBySize));
        assert_eq!(parse_bdat_arg(b"86LAST"), Err(SizeNotValid));
        assert_eq!(parse_bdat_arg(b"86\tLAST"), Err(SizeNotValid));
        assert_eq!(parse_bdat_arg(b"1234 SCRAMBLE"), Err(FollowedByJunk));
        assert_eq!(parse_bdat_arg(b"86 LASTX"), Err(FollowedByJunk));
        assert_eq!(parse_bdat_arg(b"184467440737095516150"), Err(SizeTooLarge));
        assert_eq!(
            parse_bdat_arg(b"184467440737095516150 LAST"),
            Err(BadLength)
        );
        assert_eq!(
            parse_bdat_arg(b"18446744073709551615 LAST"),
            Ok(BdatArg {
                size: u64::MAX,
                last: true
            })
        );
        assert_eq!(
            parse_bdat_arg(b"15555555557777777777 LAST").map(|a| a.size),
            Ok(15555555557777777777)
        );
    }
}
