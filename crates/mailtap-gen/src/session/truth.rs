//! Ground truth: what each transferred message was, reported to the
//! caller as it leaves the session.
use super::*;

impl Session {
    /// Reports message `m` to the truth callback: the first `len` bytes of
    /// `ctx.truth_buf` (all of it, or a `TOP` prefix).
    pub(super) fn report(&mut self, ctx: &mut Ctx, m: &Msg, len: usize, partial: bool) {
        self.report_range(ctx, m, 0, len, partial)
    }

    /// Reports bytes `a..b` of message `m` (in `ctx.truth_buf`) to the
    /// truth callback; an IMAP session's `cur` says what the transfer was.
    pub(super) fn report_range(
        &mut self,
        ctx: &mut Ctx,
        m: &Msg,
        a: usize,
        b: usize,
        partial: bool,
    ) {
        *ctx.messages += 1;
        let index = self.reported;
        self.reported += 1;
        if let Some(cb) = ctx.on_message.as_mut() {
            let pop3 = self.pop3.as_deref();
            let imap = self.imap.as_deref();
            let smtp = pop3.is_none() && imap.is_none();
            let rejected = match m.rejected {
                Some(i) if smtp => std::slice::from_ref(&m.rcpts[i]),
                _ => &[],
            };
            // A piece that does not start at the message's start carries
            // no header: it has no subject.
            let (subject, subject_decoded) = if a == 0 {
                (m.subject.as_str(), m.subject_decoded.as_str())
            } else {
                ("", "")
            };
            let t = MessageTruth {
                protocol: if pop3.is_some() {
                    Protocol::Pop3
                } else if imap.is_some() {
                    Protocol::Imap
                } else {
                    Protocol::Smtp
                },
                orig: (self.ip[0], self.port[0]),
                resp: (self.ip[1], self.port[1]),
                index_in_session: index,
                mailfrom: &m.mailfrom,
                rcptto: &m.rcpts,
                rcptto_rejected: rejected,
                subject,
                subject_decoded,
                bytes: &ctx.truth_buf[a..b],
                via_bdat: self.mode == Mode::Bdat,
                status_code: if smtp { Some(m.status) } else { None },
                user: pop3
                    .map(|p| p.user.as_str())
                    .or(imap.map(|i| i.user.as_str())),
                partial,
                complete: !self.gap,
                imap: imap.and_then(|i| i.cur),
            };
            cb(&t);
        }
    }
}
