//! Chooses the application analyzer for each connection: SMTP on its
//! configured ports, or anywhere after dynamic detection (client HELO/EHLO
//! and server 220, as Zeek's signature pair requires).

use mailtap_core::{ConnCtx, ConnId, TcpAnalyzer};
use mailtap_flow::{AnalyzerFactory, Detect};
use mailtap_smtp::{SmtpAnalyzer, SmtpConfig};
use std::sync::Arc;

/// The analyzers a connection can carry.
pub enum MailAnalyzer {
    Smtp(SmtpAnalyzer),
}

impl TcpAnalyzer for MailAnalyzer {
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        match self {
            MailAnalyzer::Smtp(a) => a.deliver(cx, is_orig, data),
        }
    }
    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
        match self {
            MailAnalyzer::Smtp(a) => a.gap(cx, is_orig, len),
        }
    }
    fn eof(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool) {
        match self {
            MailAnalyzer::Smtp(a) => a.eof(cx, is_orig),
        }
    }
    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        match self {
            MailAnalyzer::Smtp(a) => a.done(cx),
        }
    }
    fn disabled(&self) -> bool {
        match self {
            MailAnalyzer::Smtp(a) => a.disabled(),
        }
    }
}

/// Factory of [`MailAnalyzer`]s, shared read-only by the shards.
#[derive(Clone)]
pub struct MailAnalyzers {
    pub smtp: Arc<SmtpConfig>,
    /// Whether dynamic protocol detection runs on other ports.
    pub dpd: bool,
}

impl AnalyzerFactory for MailAnalyzers {
    type Analyzer = MailAnalyzer;

    fn by_port(&self, id: &ConnId) -> Option<MailAnalyzer> {
        self.smtp
            .ports
            .contains(&id.resp_p)
            .then(|| MailAnalyzer::Smtp(SmtpAnalyzer::new(self.smtp.clone())))
    }

    fn detect(&self, _id: &ConnId, orig: &[u8], resp: &[u8]) -> Detect<MailAnalyzer> {
        if !self.dpd {
            return Detect::GiveUp;
        }
        let o = !orig.is_empty() && mailtap_smtp::dpd_orig_matches(orig);
        let r = !resp.is_empty() && mailtap_smtp::dpd_resp_matches(resp);
        if o && r {
            return Detect::Attach(MailAnalyzer::Smtp(SmtpAnalyzer::new(self.smtp.clone())));
        }
        // Each side must match on its first bytes; once a side has shown
        // enough to be judged and does not match, stop looking.
        let judged =
            |b: &[u8], m: bool| !b.is_empty() && !m && (b.len() >= 64 || b.contains(&b'\n'));
        if judged(orig, o) || judged(resp, r) {
            Detect::GiveUp
        } else {
            Detect::NeedMore
        }
    }
}
