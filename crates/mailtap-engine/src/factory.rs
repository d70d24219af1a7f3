//! Chooses the application analyzer for each connection: SMTP, POP3, IMAP
//! or TLS on their configured ports, or anywhere after dynamic detection
//! over the first bytes of both sides, as Zeek's signature pairs require:
//!
//! * SMTP: client HELO/EHLO at a line start, server starting with `220`;
//! * POP3: server starting with `+OK`, client USER/APOP/CAPA/AUTH/STLS at a
//!   line start;
//! * IMAP: server greeting `* OK` or `* PREAUTH`, client tagged command
//!   (`a1 CAPABILITY`) at a line start;
//! * TLS: a ClientHello from the client.
//!
//! The server halves exclude each other (`220`, `+OK`, `* `, a TLS
//! record), so at most one pair can match. After an accepted STARTTLS
//! (SMTP, IMAP) or STLS (POP3) the TLS analyzer takes the rest of the
//! connection.

use mailtap_core::{ConnCtx, ConnId, TcpAnalyzer};
use mailtap_flow::{AnalyzerFactory, Detect};
use mailtap_imap::{ImapAnalyzer, ImapConfig};
use mailtap_pop3::{Pop3Analyzer, Pop3Config};
use mailtap_smtp::{SmtpAnalyzer, SmtpConfig};
use mailtap_tls::{TlsAnalyzer, TlsConfig};
use std::sync::Arc;

/// The analyzer of a connection: a mail protocol, and the TLS analyzer
/// once the session switched to TLS (STARTTLS/STLS accepted) or when it
/// is TLS from the start (implicit-TLS port, detection). The mail
/// analyzer stays attached after the switch, as Zeek's does: its log row
/// (with `tls` set) is written when the connection ends.
pub struct MailAnalyzer {
    app: App,
    tls: Option<Box<TlsAnalyzer>>,
    /// For the TLS analyzer created at the switch; `None` when the
    /// encrypted part is not analysed (`ssl.analyze = false`).
    tls_cfg: Option<Arc<TlsConfig>>,
    /// The mail session accepted STARTTLS/STLS: the rest is TLS.
    switched: bool,
    /// The connection as the analyzer sees it when the flow is oriented
    /// the other way round: picked up mid-stream with the server's side
    /// first and a server port Zeek does not count as likely (POP3's 110),
    /// so conn.log names the server as the originator, as Zeek does. The
    /// analyzer gets the roles swapped back (and this id), so it reads the
    /// client's commands as commands.
    reversed: Option<ConnId>,
}

/// The application protocol found on the connection (boxed: the states
/// are large and differ in size, and most flows carry none).
enum App {
    Smtp(Box<SmtpAnalyzer>),
    Pop3(Box<Pop3Analyzer>),
    Imap(Box<ImapAnalyzer>),
    /// TLS from the first byte; the analyzer is in `MailAnalyzer::tls`.
    Tls,
}

impl MailAnalyzer {
    /// `smtp`, `pop3`, `imap` or `ssl`: the protocol the connection was
    /// given to.
    pub fn kind(&self) -> &'static str {
        match self.app {
            App::Smtp(_) => "smtp",
            App::Pop3(_) => "pop3",
            App::Imap(_) => "imap",
            App::Tls => "ssl",
        }
    }

    /// True once the TLS analyzer has nothing more to learn from the
    /// connection (handshake over): its later payload may be bypassed.
    pub fn tls_handshake_done(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.handshake_done())
    }

    /// After a delivery to the mail analyzer: if it accepted STARTTLS/STLS
    /// in that delivery, start the TLS analyzer on the rest of `data`.
    fn hand_off(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        let off = match &mut self.app {
            App::Smtp(a) => a.take_tls_handoff(),
            App::Pop3(a) => a.take_tls_handoff(),
            App::Imap(a) => a.take_tls_handoff(),
            App::Tls => None,
        };
        let Some(off) = off else {
            return;
        };
        self.switched = true;
        let Some(cfg) = self.tls_cfg.as_ref() else {
            return;
        };
        let mut t = Box::new(TlsAnalyzer::new(cfg.clone()));
        if let Some(rest) = data.get(off..).filter(|r| !r.is_empty()) {
            t.deliver(cx, is_orig, rest);
        }
        self.tls = Some(t);
    }
}

impl MailAnalyzer {
    fn oriented_deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        if let Some(t) = self.tls.as_mut() {
            t.deliver(cx, is_orig, data);
        }
        match &mut self.app {
            App::Smtp(a) => a.deliver(cx, is_orig, data),
            App::Pop3(a) => a.deliver(cx, is_orig, data),
            App::Imap(a) => a.deliver(cx, is_orig, data),
            App::Tls => return,
        }
        if self.tls.is_none() {
            self.hand_off(cx, is_orig, data);
        }
    }
    fn oriented_gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
        if let Some(t) = self.tls.as_mut() {
            t.gap(cx, is_orig, len);
        }
        match &mut self.app {
            App::Smtp(a) => a.gap(cx, is_orig, len),
            App::Pop3(a) => a.gap(cx, is_orig, len),
            App::Imap(a) => a.gap(cx, is_orig, len),
            App::Tls => {}
        }
    }
    fn oriented_eof(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool) {
        if let Some(t) = self.tls.as_mut() {
            t.eof(cx, is_orig);
        }
        match &mut self.app {
            App::Smtp(a) => a.eof(cx, is_orig),
            App::Pop3(a) => a.eof(cx, is_orig),
            App::Imap(a) => a.eof(cx, is_orig),
            App::Tls => {}
        }
    }
    fn oriented_done(&mut self, cx: &mut ConnCtx<'_>) {
        if let Some(t) = self.tls.as_mut() {
            t.done(cx);
        }
        match &mut self.app {
            App::Smtp(a) => a.done(cx),
            App::Pop3(a) => a.done(cx),
            App::Imap(a) => a.done(cx),
            App::Tls => {}
        }
    }

    /// Runs `f` with the roles as the analyzer sees them (see `reversed`).
    fn oriented<R>(
        &mut self,
        cx: &mut ConnCtx<'_>,
        is_orig: bool,
        f: impl FnOnce(&mut Self, &mut ConnCtx<'_>, bool) -> R,
    ) -> R {
        match self.reversed {
            Some(id) => {
                let mut rcx = ConnCtx {
                    ts: cx.ts,
                    uid: cx.uid,
                    id: &id,
                    out: &mut *cx.out,
                    conn: &mut *cx.conn,
                };
                f(self, &mut rcx, !is_orig)
            }
            None => f(self, cx, is_orig),
        }
    }
}

impl TcpAnalyzer for MailAnalyzer {
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        self.oriented(cx, is_orig, |a, cx, o| a.oriented_deliver(cx, o, data));
    }
    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
        self.oriented(cx, is_orig, |a, cx, o| a.oriented_gap(cx, o, len));
    }
    fn eof(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool) {
        self.oriented(cx, is_orig, |a, cx, o| a.oriented_eof(cx, o));
    }
    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        self.oriented(cx, true, |a, cx, _| a.oriented_done(cx));
    }
    fn start_midstream(&mut self) {
        match &mut self.app {
            App::Smtp(a) => a.start_midstream(),
            App::Pop3(a) => a.start_midstream(),
            App::Imap(a) => a.start_midstream(),
            // The TLS analyzer finds record boundaries itself.
            App::Tls => {}
        }
    }
    fn bypass_ready(&self) -> bool {
        let tls_over = self.tls.as_ref().is_none_or(|t| t.handshake_done());
        match self.app {
            App::Tls => tls_over,
            // After STARTTLS/STLS: once the handshake is analysed, or at
            // once when TLS is not analysed (`ssl.analyze = false`).
            App::Smtp(_) | App::Pop3(_) | App::Imap(_) => self.switched && tls_over,
        }
    }
    fn disabled(&self) -> bool {
        if let Some(t) = self.tls.as_ref() {
            return t.disabled();
        }
        match &self.app {
            App::Smtp(a) => a.disabled(),
            App::Pop3(a) => a.disabled(),
            App::Imap(a) => a.disabled(),
            App::Tls => true,
        }
    }
}

/// Factory of [`MailAnalyzer`]s, shared read-only by the shards.
#[derive(Clone)]
pub struct MailAnalyzers {
    pub smtp: Arc<SmtpConfig>,
    pub pop3: Arc<Pop3Config>,
    pub imap: Arc<ImapConfig>,
    pub tls: Arc<TlsConfig>,
    /// Whether dynamic protocol detection runs on other ports.
    pub dpd: bool,
}

impl MailAnalyzers {
    /// The analyzers with Zeek's defaults (plus POP3 on 110, IMAP on 143,
    /// TLS on 465, 993 and 995), detection on.
    pub fn with_defaults() -> Self {
        MailAnalyzers {
            smtp: Arc::new(SmtpConfig::default()),
            pop3: Arc::new(Pop3Config::default()),
            imap: Arc::new(ImapConfig::default()),
            tls: Arc::new(TlsConfig::default()),
            dpd: true,
        }
    }

    fn tls_cfg(&self) -> Option<Arc<TlsConfig>> {
        self.tls.analyze.then(|| self.tls.clone())
    }

    fn smtp(&self) -> MailAnalyzer {
        MailAnalyzer {
            app: App::Smtp(Box::new(SmtpAnalyzer::new(self.smtp.clone()))),
            tls: None,
            tls_cfg: self.tls_cfg(),
            switched: false,
            reversed: None,
        }
    }

    fn pop3(&self) -> MailAnalyzer {
        MailAnalyzer {
            app: App::Pop3(Box::new(Pop3Analyzer::new(self.pop3.clone()))),
            tls: None,
            tls_cfg: self.tls_cfg(),
            switched: false,
            reversed: None,
        }
    }

    fn imap(&self) -> MailAnalyzer {
        MailAnalyzer {
            app: App::Imap(Box::new(ImapAnalyzer::new(self.imap.clone()))),
            tls: None,
            tls_cfg: self.tls_cfg(),
            switched: false,
            reversed: None,
        }
    }

    fn tls(&self) -> MailAnalyzer {
        MailAnalyzer {
            app: App::Tls,
            tls: Some(Box::new(TlsAnalyzer::new(self.tls.clone()))),
            tls_cfg: None,
            switched: false,
            reversed: None,
        }
    }
}

impl AnalyzerFactory for MailAnalyzers {
    type Analyzer = MailAnalyzer;

    fn by_port(&self, id: &ConnId) -> Option<MailAnalyzer> {
        // A port in several lists goes to SMTP, then POP3, then IMAP,
        // then TLS.
        if self.smtp.ports.contains(&id.resp_p) {
            Some(self.smtp())
        } else if self.pop3.ports.contains(&id.resp_p) {
            Some(self.pop3())
        } else if self.imap.ports.contains(&id.resp_p) {
            Some(self.imap())
        } else if self.tls.analyze && self.tls.ports.contains(&id.resp_p) {
            Some(self.tls())
        } else {
            None
        }
    }

    fn by_server_port(&self, id: &ConnId) -> Option<MailAnalyzer> {
        let server_first = ConnId {
            orig_h: id.resp_h,
            orig_p: id.resp_p,
            resp_h: id.orig_h,
            resp_p: id.orig_p,
        };
        let mut a = self.by_port(&server_first)?;
        a.reversed = Some(server_first);
        Some(a)
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
        let io = !orig.is_empty() && mailtap_imap::dpd_orig_matches(orig);
        let ir = !resp.is_empty() && mailtap_imap::dpd_resp_matches(resp);
        if io && ir {
            return Detect::Attach(self.imap());
        }
        // TLS: a ClientHello from the originator.
        let to = !orig.is_empty() && mailtap_tls::dpd_orig_matches(orig);
        // Attached on the ClientHello alone, as Zeek does, so the TLS
        // analyzer sees the hello at its own packet's time.
        if self.tls.analyze && to {
            return Detect::Attach(self.tls());
        }
        // SMTP: each side must match on its first line; once a side has
        // shown enough to be judged and does not match, SMTP is out.
        let judged =
            |b: &[u8], m: bool| !b.is_empty() && !m && (b.len() >= 64 || b.contains(&b'\n'));
        let smtp_possible = !judged(orig, so) && !judged(resp, sr);
        // POP3: the server must start with `+OK`; the client keyword may
        // come on any line within the detection buffer.
        let pop3_possible = mailtap_pop3::dpd_resp_possible(resp);
        // IMAP: the server must greet with `* OK`/`* PREAUTH`; the
        // client's tagged command may come on any line within the buffer.
        let imap_possible = imap_resp_possible(resp);
        // TLS: the originator's hello must match; the server's may follow.
        if smtp_possible || pop3_possible || imap_possible {
            Detect::NeedMore
        } else {
            Detect::GiveUp
        }
    }
}

/// Whether the server's first bytes may still be an IMAP greeting: none
/// yet, a greeting, or the start of one cut short.
fn imap_resp_possible(resp: &[u8]) -> bool {
    if resp.is_empty() || mailtap_imap::dpd_resp_matches(resp) {
        return true;
    }
    let up = resp.to_ascii_uppercase();
    [&b"* OK "[..], b"* PREAUTH "]
        .iter()
        .any(|g| up.len() < g.len() && g.starts_with(&up))
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
            Detect::Attach(a) => a.kind(),
            Detect::NeedMore => "more",
            Detect::GiveUp => "giveup",
        }
    }

    #[test]
    fn by_port() {
        let f = MailAnalyzers::with_defaults();
        let kind = |p| f.by_port(&id(p)).map(|a| a.kind());
        assert_eq!(kind(25), Some("smtp"));
        assert_eq!(kind(587), Some("smtp"));
        assert_eq!(kind(110), Some("pop3"));
        assert_eq!(kind(143), Some("imap"));
        assert_eq!(kind(465), Some("ssl"));
        assert_eq!(kind(993), Some("ssl"));
        assert_eq!(kind(995), Some("ssl"));
        assert_eq!(kind(6379), None);
        let off = MailAnalyzers {
            tls: Arc::new(TlsConfig {
                analyze: false,
                ..TlsConfig::default()
            }),
            ..MailAnalyzers::with_defaults()
        };
        assert_eq!(off.by_port(&id(465)).map(|a| a.kind()), None);
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
        assert_eq!(
            kind(f.detect(&i, b"a1 CAPABILITY\r\n", b"* OK IMAP4rev1 ready\r\n")),
            "imap"
        );
        assert_eq!(
            kind(f.detect(&i, b"", b"* PREAUTH IMAP4rev1 ready\r\n")),
            "more"
        );
        assert_eq!(kind(f.detect(&i, b"", b"* O")), "more");
        // An IMAP greeting with a client that sends no IMAP command.
        assert_eq!(
            kind(f.detect(&i, b"GET / HTTP/1.1\r\n", b"* OK hi\r\n")),
            "more"
        );
        assert_eq!(
            kind(f.detect(&i, b"a1 LOGIN x y\r\n", b"220 mx\r\n")),
            "giveup"
        );
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

    #[test]
    fn starttls_hands_the_rest_to_tls() {
        use mailtap_core::analyzer::ConnAnnotations;
        use mailtap_core::{Output, Timestamp};
        let f = MailAnalyzers::with_defaults();
        let i = id(25);
        let mut a = f.by_port(&i).expect("smtp");
        let mut out = Output::new(false);
        let mut conn = ConnAnnotations::default();
        let mut cx = ConnCtx {
            ts: Timestamp(1),
            uid: "C1",
            id: &i,
            out: &mut out,
            conn: &mut conn,
        };
        a.deliver(&mut cx, false, b"220 mx ESMTP\r\n");
        a.deliver(&mut cx, true, b"EHLO c\r\n");
        a.deliver(&mut cx, false, b"250 mx\r\n");
        a.deliver(&mut cx, true, b"STARTTLS\r\n");
        assert!(a.tls.is_none());
        a.deliver(&mut cx, false, b"220 go ahead\r\n");
        assert!(a.tls.is_some(), "TLS analyzer after the 220");
        // With analysis off, the switch attaches nothing.
        let off = MailAnalyzers {
            tls: Arc::new(TlsConfig {
                analyze: false,
                ..TlsConfig::default()
            }),
            ..MailAnalyzers::with_defaults()
        };
        let mut b = off.by_port(&i).expect("smtp");
        for (orig, d) in [
            (false, &b"220 mx\r\n"[..]),
            (true, b"EHLO c\r\n"),
            (false, b"250 mx\r\n"),
            (true, b"STARTTLS\r\n"),
            (false, b"220 go ahead\r\n"),
        ] {
            b.deliver(&mut cx, orig, d);
        }
        assert!(b.tls.is_none());
        assert_eq!(conn.service, vec!["smtp"]);
    }

    #[test]
    fn imap_starttls_hands_the_rest_to_tls() {
        use mailtap_core::analyzer::ConnAnnotations;
        use mailtap_core::{Output, Record, Timestamp};
        let f = MailAnalyzers::with_defaults();
        let i = id(143);
        let mut a = f.by_port(&i).expect("imap");
        assert_eq!(a.kind(), "imap");
        let mut out = Output::new(true);
        let mut conn = ConnAnnotations::default();
        let mut cx = ConnCtx {
            ts: Timestamp(1),
            uid: "C1",
            id: &i,
            out: &mut out,
            conn: &mut conn,
        };
        a.deliver(
            &mut cx,
            false,
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n",
        );
        a.deliver(&mut cx, true, b"a1 STARTTLS\r\n");
        assert!(a.tls.is_none());
        a.deliver(&mut cx, false, b"a1 OK Begin TLS negotiation now\r\n");
        assert!(a.tls.is_some(), "TLS analyzer after the OK");
        a.done(&mut cx);
        assert_eq!(conn.service, vec!["imap"]);
        let rows: Vec<_> = out
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Imap(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].starttls);
        assert!(out.records.iter().any(|r| matches!(
            r,
            Record::Event(e) if e.event == mailtap_core::Event::ImapStarttls
        )));
    }
}
