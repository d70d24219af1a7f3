//! Chooses the application analyzer for each connection: SMTP or POP3 on
//! their configured ports, or anywhere after dynamic detection over the
//! first bytes of both sides, as Zeek's signature pairs require:
//!
//! * SMTP: client HELO/EHLO at a line start, server starting with `220`;
//! * POP3: server starting with `+OK`, client USER/APOP/CAPA/AUTH/STLS at a
//!   line start.
//!
//! The server halves exclude each other (`220` vs `+OK`), so at most one
//! pair can match.

use mailtap_core::{ConnCtx, ConnId, TcpAnalyzer};
use mailtap_flow::{AnalyzerFactory, Detect};
use mailtap_pop3::{Pop3Analyzer, Pop3Config};
use mailtap_smtp::{SmtpAnalyzer, SmtpConfig};
use std::sync::Arc;

/// The analyzers a connection can carry (boxed: their states are large and
/// differ in size, and most flows carry none).
pub enum MailAnalyzer {
    Smtp(Box<SmtpAnalyzer>),
    Pop3(Box<Pop3Analyzer>),
}

impl TcpAnalyzer for MailAnalyzer {
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        match self {
            MailAnalyzer::Smtp(a) => a.deliver(cx, is_orig, data),
            MailAnalyzer::Pop3(a) => a.deliver(cx, is_orig, data),
        }
    }
    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
        match self {
            MailAnalyzer::Smtp(a) => a.gap(cx, is_orig, len),
            MailAnalyzer::Pop3(a) => a.gap(cx, is_orig, len),
        }
    }
    fn eof(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool) {
        match self {
            MailAnalyzer::Smtp(a) => a.eof(cx, is_orig),
            MailAnalyzer::Pop3(a) => a.eof(cx, is_orig),
        }
    }
    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        match self {
            MailAnalyzer::Smtp(a) => a.done(cx),
            MailAnalyzer::Pop3(a) => a.done(cx),
        }
    }
    fn disabled(&self) -> bool {
        match self {
            MailAnalyzer::Smtp(a) => a.disabled(),
            MailAnalyzer::Pop3(a) => a.disabled(),
        }
    }
}

/// Factory of [`MailAnalyzer`]s, shared read-only by the shards.
#[derive(Clone)]
pub struct MailAnalyzers {
    pub smtp: Arc<SmtpConfig>,
    pub pop3: Arc<Pop3Config>,
    /// Whether dynamic protocol detection runs on other ports.
    pub dpd: bool,
}

impl MailAnalyzers {
    /// Both analyzers with Zeek's defaults (plus POP3 on 110), detection on.
    pub fn with_defaults() -> Self {
        MailAnalyzers {
            smtp: Arc::new(SmtpConfig::default()),
            pop3: Arc::new(Pop3Config::default()),
            dpd: true,
        }
    }

    fn smtp(&self) -> MailAnalyzer {
        MailAnalyzer::Smtp(Box::new(SmtpAnalyzer::new(self.smtp.clone())))
    }

    fn pop3(&self) -> MailAnalyzer {
        MailAnalyzer::Pop3(Box::new(Pop3Analyzer::new(self.pop3.clone())))
    }
}

impl AnalyzerFactory for MailAnalyzers {
    type Analyzer = MailAnalyzer;

    fn by_port(&self, id: &ConnId) -> Option<MailAnalyzer> {
        // A port in both lists goes to SMTP.
        if self.smtp.ports.contains(&id.resp_p) {
            Some(self.smtp())
        } else if self.pop3.ports.contains(&id.resp_p) {
            Some(self.pop3())
        } else {
            None
        }
    }

    fn detect(&self, _id: &ConnId, orig: &[u8], resp: &[u8]) -> Detect<MailAnalyzer> {
        if !self.dpd {
            return Detect::GiveUp;
        }
        let so = !orig.is_empty() && mailtap_smtp::dpd_orig_matches(orig);
        let sr = !resp.is_empty() && mailtap_smtp::dpd_resp_matches(resp);
        if so && sr {
            return Detect::Attach(self.smtp());
        }
        let po = !orig.is_empty() && mailtap_pop3::dpd_orig_matches(orig);
        let pr = !resp.is_empty() && mailtap_pop3::dpd_resp_matches(resp);
        if po && pr {
            return Detect::Attach(self.pop3());
        }
        // SMTP: each side must match on its first line; once a side has
        // shown enough to be judged and does not match, SMTP is out.
        let judged =
            |b: &[u8], m: bool| !b.is_empty() && !m && (b.len() >= 64 || b.contains(&b'\n'));
        let smtp_possible = !judged(orig, so) && !judged(resp, sr);
        // POP3: the server must start with `+OK`; the client keyword may
        // come on any line within the detection buffer.
        let pop3_possible = mailtap_pop3::dpd_resp_possible(resp);
        if smtp_possible || pop3_possible {
            Detect::NeedMore
        } else {
            Detect::GiveUp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(port: u16) -> ConnId {
        ConnId {
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: port,
        }
    }

    fn kind(d: Detect<MailAnalyzer>) -> &'static str {
        match d {
            Detect::Attach(MailAnalyzer::Smtp(_)) => "smtp",
            Detect::Attach(MailAnalyzer::Pop3(_)) => "pop3",
            Detect::NeedMore => "more",
            Detect::GiveUp => "giveup",
        }
    }

    #[test]
    fn by_port() {
        let f = MailAnalyzers::with_defaults();
        assert!(matches!(f.by_port(&id(25)), Some(MailAnalyzer::Smtp(_))));
        assert!(matches!(f.by_port(&id(587)), Some(MailAnalyzer::Smtp(_))));
        assert!(matches!(f.by_port(&id(110)), Some(MailAnalyzer::Pop3(_))));
        assert!(f.by_port(&id(6379)).is_none());
    }

    #[test]
    fn detection() {
        let f = MailAnalyzers::with_defaults();
        let i = id(2525);
        assert_eq!(
            kind(f.detect(&i, b"EHLO x\r\n", b"220 mx ESMTP\r\n")),
            "smtp"
        );
        assert_eq!(kind(f.detect(&i, b"CAPA\r\n", b"+OK ready\r\n")), "pop3");
        assert_eq!(kind(f.detect(&i, b"", b"+OK ready\r\n")), "more");
        assert_eq!(kind(f.detect(&i, b"", b"220 mx\r\n")), "more");
        // Redis: the AUTH on the third line matches POP3's client half.
        assert_eq!(
            kind(f.detect(&i, b"*2\r\n$4\r\nAUTH\r\n$4\r\nzeek\r\n", b"+OK\r\n")),
            "pop3"
        );
        assert_eq!(
            kind(f.detect(&i, b"*1\r\n$4\r\nPING\r\n", b"+OK\r\n")),
            "more"
        );
        assert_eq!(
            kind(f.detect(&i, b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n")),
            "giveup"
        );
        assert_eq!(kind(f.detect(&i, b"", b"SSH-2.0-x\r\n")), "giveup");
        // POP3 server greeting but SMTP client: POP3 keeps waiting for a
        // client keyword, SMTP is out.
        assert_eq!(kind(f.detect(&i, b"EHLO x\r\n", b"+OK\r\n")), "more");
        let off = MailAnalyzers {
            dpd: false,
            ..MailAnalyzers::with_defaults()
        };
        assert_eq!(kind(off.detect(&i, b"CAPA\r\n", b"+OK\r\n")), "giveup");
    }
}
