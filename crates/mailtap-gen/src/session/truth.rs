//! Ground truth: what each transferred message was, reported to the
//! caller as it leaves the session.
use super::*;

impl Session {
    /// Reports message `m` to the truth callback: the first `len` bytes of
    /// `ctx.truth_buf` (all of it, or a `TOP` prefix).
    pub(super) fn report(&mut self, ctx: &mut Ctx, m: &Msg, len: usize, partial: bool) {
        *ctx.messages += 1;
        let index = self.reported;
        self.reported += 1;
        if let Some(cb) = ctx.on_message.as_mut() {
            let pop3 = self.pop3.as_deref();
            let rejected = match m.rejected {
                Some(i) if pop3.is_none() => std::slice::from_ref(&m.rcpts[i]),
                _ => &[],
            };
            let t = MessageTruth {
                protocol: if pop3.is_some() {
                    Protocol::Pop3
                } else {
                    Protocol::Smtp
                },
                orig: (self.ip[0], self.port[0]),
                resp: (self.ip[1], self.port[1]),
                index_in_session: index,
                mailfrom: &m.mailfrom,
                rcptto: &m.rcpts,
                rcptto_rejected: rejected,
                subject: &m.subject,
                subject_decoded: &m.subject_decoded,
                bytes: &ctx.truth_buf[..len],
                via_bdat: self.mode == Mode::Bdat,
                status_code: if pop3.is_some() { None } else { Some(m.status) },
                user: pop3.map(|p| p.user.as_str()),
                partial,
                complete: !self.gap,
            };
            cb(&t);
        }
    }
}
