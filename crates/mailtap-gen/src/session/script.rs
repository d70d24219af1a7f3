//! The SMTP dialogue: the session's stages (greeting, EHLO, AUTH,
//! STARTTLS and the TLS records after it, transactions, QUIT) and each
//! transaction's commands, replies and message transfer (DATA or BDAT).
use super::*;

impl Session {
    pub(super) fn advance(&mut self, ctx: &mut Ctx) {
        debug_assert!(
            self.plan.is_empty() && self.flights[0].is_empty() && self.flights[1].is_empty()
        );
        if self.msg.is_none() {
            self.local.clear();
        }
        if self.pop3.is_some() && matches!(self.stage, Stage::Greeting) {
            return self.pop3_step(ctx);
        }
        if self.imap.is_some() && matches!(self.stage, Stage::Greeting) {
            return self.imap_advance(ctx);
        }
        if matches!(self.stage, Stage::Tls) {
            return self.tls_step(ctx);
        }
        match self.stage {
            Stage::Connect => {
                let d = self.rng.range32(20, 150);
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Syn,
                    delay: 0,
                });
                self.plan.push_back(Item {
                    dir: S as u8,
                    kind: Kind::SynAck,
                    delay: d,
                });
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Ack,
                    delay: self.rtt,
                });
                self.stage = Stage::Greeting;
            }
            Stage::Greeting => {
                let a = self.mark();
                let r = self.rng.below(3);
                let _ = match r {
                    0 => write!(
                        self.local,
                        "220 {} ESMTP Postfix (Debian/GNU)\r\n",
                        self.server
                    ),
                    1 => {
                        let _ = write!(self.local, "220-{} ESMTP Exim 4.96 ", self.server);
                        rfc5322_date(&mut self.local, ctx.now_us);
                        write!(
                            self.local,
                            "\r\n220-We do not authorize the use of this system to transport unsolicited,\r\n220 and/or bulk e-mail.\r\n"
                        )
                    }
                    _ => write!(
                        self.local,
                        "220 {} Microsoft ESMTP MAIL Service ready\r\n",
                        self.server
                    ),
                };
                let d = self.rng.range32(300, 5_000);
                self.send_local(S, a, d);
                self.maybe_client_ack();
                self.stage = Stage::Ehlo;
            }
            Stage::Ehlo => {
                let c = self.mark();
                let _ = write!(self.local, "EHLO {}\r\n", self.helo);
                let r = self.mark();
                let _ = write!(
                    self.local,
                    "250-{} Hello {}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
                    self.server, self.helo
                );
                self.exchange(c, r, false);
                self.stage = if self.starttls {
                    Stage::StartTls
                } else if self.auth != Auth::None {
                    Stage::Auth
                } else {
                    Stage::Mail
                };
            }
            Stage::StartTls => {
                let c = self.mark();
                self.local.extend_from_slice(b"STARTTLS\r\n");
                let r = self.mark();
                self.local
                    .extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
                self.exchange(c, r, false);
                self.stage = if self.tls.is_some() {
                    Stage::Tls
                } else {
                    Stage::TlsHandshake
                };
            }
            Stage::TlsHandshake => {
                self.tls_on = true;
                let n = self.rng.range(500, 600) as usize;
                let len = self.tls_record(ctx.pools, C, 0x16, 0x01, n);
                let t = self.think().min(500);
                self.push_data(C, len, t, false);
                let n = self.rng.range(2_500, 4_800) as usize;
                let mut len = self.tls_record(ctx.pools, S, 0x16, 0x03, n);
                len += self.tls_record(ctx.pools, S, 0x14, 0x03, 1);
                len += self.tls_record(ctx.pools, S, 0x16, 0x03, 40);
                let d = self.reply_delay(false);
                self.push_data(S, len, d, true);
                let mut len = self.tls_record(ctx.pools, C, 0x14, 0x03, 1);
                len += self.tls_record(ctx.pools, C, 0x16, 0x03, 40);
                let t = self.think();
                self.push_data(C, len, t, false);
                self.stage = Stage::TlsData(self.n_msgs * 2 + 2);
            }
            Stage::TlsData(n) => {
                if n == 0 {
                    self.stage = Stage::TlsClose;
                    return self.advance(ctx);
                }
                let want = if n % 2 == 1 {
                    self.rng
                        .range(ctx.cfg.body_bytes.0 as u64, ctx.cfg.body_bytes.1 as u64)
                        as usize
                } else {
                    self.rng.range(20, 120) as usize
                };
                let mut len = 0;
                let mut left = want.max(1);
                while left > 0 {
                    let r = left.min(16_384);
                    len += self.tls_record(ctx.pools, C, 0x17, 0x03, r + 24);
                    left -= r;
                }
                let t = self.think();
                self.push_data(C, len, t, len > 3000);
                let sz = self.rng.range(30, 90) as usize;
                let len = self.tls_record(ctx.pools, S, 0x17, 0x03, sz);
                let d = self.reply_delay(n % 2 == 1);
                self.push_data(S, len, d, false);
                self.maybe_client_ack();
                self.stage = Stage::TlsData(n - 1);
            }
            Stage::TlsClose => {
                let len = self.tls_record(ctx.pools, C, 0x15, 0x03, 26);
                let t = self.think();
                self.push_data(C, len, t, false);
                let d1 = self.rng.range32(5, 100);
                let d2 = self.rtt + self.rng.range32(10, 300);
                let d3 = self.rtt;
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Fin,
                    delay: d1,
                });
                self.plan.push_back(Item {
                    dir: S as u8,
                    kind: Kind::Fin,
                    delay: d2,
                });
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Ack,
                    delay: d3,
                });
                self.stage = Stage::Done;
            }
            Stage::Auth => {
                let user = self.sender.clone();
                let pass = format!("pw{:08x}", self.rng.next_u64() as u32);
                let c = self.mark();
                if self.auth == Auth::Plain && self.long_auth > 0 {
                    // the credentials as a continuation line of their own
                    self.local.extend_from_slice(b"AUTH PLAIN\r\n");
                    let r = self.mark();
                    self.local.extend_from_slice(b"334 \r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::AuthLogin(3);
                } else if self.auth == Auth::Plain {
                    self.local.extend_from_slice(b"AUTH PLAIN ");
                    let cred = format!("\0{user}\0{pass}");
                    base64_into(&mut self.local, cred.as_bytes());
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"235 2.7.0 Authentication successful\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::Mail;
                } else {
                    self.local.extend_from_slice(b"AUTH LOGIN\r\n");
                    let r = self.mark();
                    self.local.extend_from_slice(b"334 VXNlcm5hbWU6\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::AuthLogin(1);
                }
            }
            Stage::AuthLogin(k) => {
                let c = self.mark();
                if k == 1 {
                    let user = self.sender.clone();
                    base64_into(&mut self.local, user.as_bytes());
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::AuthLogin(2);
                } else if self.long_auth > 0 {
                    // AUTH LOGIN's password (k == 2) or AUTH PLAIN's
                    // credentials (k == 3), base64, one long line
                    let prefix = if k == 3 {
                        format!("\0{}\0", self.sender)
                    } else {
                        String::new()
                    };
                    if k == 2 {
                        // the draw of the short password: the rest of the
                        // session stays as without the quirk
                        let _ = self.rng.next_u64();
                    }
                    let raw = self.long_auth.div_ceil(4) * 3;
                    let mut q = Rng::derive(ctx.cfg.seed ^ QUIRK_STREAM.rotate_left(17), self.id);
                    let mut cred = prefix.into_bytes();
                    let want = raw.max(cred.len() + 8);
                    while cred.len() < want {
                        cred.push(b"abcdefghijklmnopqrstuvwxyz0123456789"[q.below(36) as usize]);
                    }
                    base64_into(&mut self.local, &cred);
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"235 2.7.0 Authentication successful\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::Mail;
                } else {
                    let pass = format!("pw{:08x}", self.rng.next_u64() as u32);
                    base64_into(&mut self.local, pass.as_bytes());
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"235 2.7.0 Authentication successful\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::Mail;
                }
            }
            Stage::Mail => self.mail_step(ctx),
            Stage::Quit if self.abandon => {
                // the client goes away: no QUIT, no FIN
                self.unclosed = true;
                self.stage = Stage::Done;
            }
            Stage::Quit => {
                let c = self.mark();
                self.local.extend_from_slice(b"QUIT\r\n");
                let r = self.mark();
                self.local.extend_from_slice(b"221 2.0.0 Bye\r\n");
                self.exchange(c, r, false);
                self.teardown_server_first();
                self.stage = Stage::Done;
            }
            Stage::Tls => unreachable!("handled above"),
            Stage::Done => {}
        }
    }

    /// Queues a TLS-looking record (5-byte header from `local`, opaque
    /// payload from the pool) for `dir`; returns its total length.
    pub(super) fn tls_record(
        &mut self,
        pools: &Pools,
        dir: usize,
        ctype: u8,
        minor: u8,
        len: usize,
    ) -> u64 {
        let a = self.mark();
        self.local
            .extend_from_slice(&[ctype, 3, minor, (len >> 8) as u8, len as u8]);
        self.flights[dir].push_back(Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: self.local.len() as u32,
        });
        self.push_opaque(pools, dir, len);
        5 + len as u64
    }

    /// Queues `len` opaque (random-looking) bytes for `dir`.
    pub(super) fn push_opaque(&mut self, pools: &Pools, dir: usize, len: usize) {
        let pool = pools.opaque.len();
        let mut left = len;
        while left > 0 {
            let st = self.rng.below(pool as u64) as usize;
            let n = left.min(pool - st);
            self.flights[dir].push_back(Seg {
                src: SRC_OPAQUE,
                start: st as u32,
                end: (st + n) as u32,
            });
            left -= n;
        }
    }

    pub(super) fn mail_step(&mut self, ctx: &mut Ctx) {
        if self.msg.is_none() {
            if self.msgs_done >= self.n_msgs {
                self.stage = Stage::Quit;
                return self.advance(ctx);
            }
            if self.msgs_done > 0 && !self.rset_done && self.rng.pct(12) {
                self.rset_done = true;
                let c = self.mark();
                self.local.extend_from_slice(b"RSET\r\n");
                let r = self.mark();
                self.local.extend_from_slice(b"250 2.0.0 Ok\r\n");
                self.exchange(c, r, false);
                return;
            }
            let mut m = self.build_message(ctx);
            m.fate = self.draw_fate(ctx.cfg);
            if m.fate == Fate::Data {
                let len = ctx.truth_buf.len();
                self.report(ctx, &m, len, false);
            }
            self.msg = Some(m);
        }
        let mut m = self.msg.take().expect("message");
        let k = m.rcpts.len() as u32;
        let spans = ctx.on_span.is_some() && m.fate == Fate::Data;
        if spans && m.step == 0 {
            self.span = Some(self.new_span(C, self.stream_off(C)));
        }
        let done = match self.mode {
            Mode::Plain => {
                let c = self.mark();
                if m.step == 0 {
                    self.mail_cmd(&m);
                    let r = self.mark();
                    self.mail_reply(&m);
                    self.exchange(c, r, false);
                } else if m.step <= k {
                    let i = (m.step - 1) as usize;
                    self.rcpt_cmd(&m, i);
                    let r = self.mark();
                    self.rcpt_reply(&m, i);
                    self.exchange(c, r, false);
                } else if m.step == k + 1 {
                    if spans {
                        let off = self.stream_off(S);
                        self.span.as_mut().expect("span").data_mark = (S, off);
                    }
                    self.local.extend_from_slice(b"DATA\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                    self.exchange(c, r, false);
                } else {
                    self.body_span(spans, &m);
                    self.send_body(&m);
                }
                m.step += 1;
                // a rejected sender or no accepted recipient: no DATA
                m.step > k + 2
                    || (m.fate == Fate::MailRejected && m.step == 1)
                    || (m.fate == Fate::RcptRejected && m.step == k + 1)
            }
            Mode::Pipelined => {
                if m.step == 0 {
                    let c = self.mark();
                    self.mail_cmd(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_cmd(&m, i);
                    }
                    self.local.extend_from_slice(b"DATA\r\n");
                    let r = self.mark();
                    self.mail_reply(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_reply(&m, i);
                    }
                    if spans {
                        let off = self.stream_off(S) + (self.mark() - r) as u64;
                        self.span.as_mut().expect("span").data_mark = (S, off);
                    }
                    self.local.extend_from_slice(match m.fate {
                        Fate::Data => b"354 End data with <CR><LF>.<CR><LF>\r\n",
                        Fate::MailRejected => b"503 5.5.1 Error: need RCPT command\r\n",
                        Fate::RcptRejected => b"554 5.5.1 Error: no valid recipients\r\n",
                    });
                    self.exchange(c, r, false);
                } else {
                    self.body_span(spans, &m);
                    self.send_body(&m);
                }
                m.step += 1;
                m.step > 1 || m.fate != Fate::Data
            }
            Mode::Bdat => {
                let n_chunks = m.chunks.len() as u32 - 1;
                if m.step == 0 {
                    let c = self.mark();
                    self.mail_cmd(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_cmd(&m, i);
                    }
                    let r = self.mark();
                    self.mail_reply(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_reply(&m, i);
                    }
                    self.exchange(c, r, false);
                    if m.fate != Fate::Data {
                        // nothing accepted: no BDAT
                        m.step = n_chunks + m.zero_last as u32;
                    }
                } else if m.step <= n_chunks {
                    let j = m.step as usize;
                    let (from, to) = (m.chunks[j - 1], m.chunks[j]);
                    let last = m.step == n_chunks && !m.zero_last;
                    let a = self.mark();
                    let cmd_off = self.stream_off(C);
                    let _ = write!(
                        self.local,
                        "BDAT {}{}\r\n",
                        to - from,
                        if last { " LAST" } else { "" }
                    );
                    if spans {
                        let d0 = cmd_off + (self.local.len() - a) as u64;
                        let end = self.stream_off(S);
                        let sp = self.span.as_mut().expect("span");
                        if j == 1 {
                            // A BDAT chunk seen mid-stream may be any
                            // chunk: only the MAIL FROM before it tells
                            // that it is the first.
                            sp.data_mark = (C, sp.start.min(cmd_off));
                        }
                        sp.data.push((d0, d0 + (to - from)));
                        sp.end = (S, end);
                    }
                    self.flights[C].push_back(Seg {
                        src: SRC_LOCAL,
                        start: a as u32,
                        end: self.local.len() as u32,
                    });
                    let mut len = (self.local.len() - a) as u64;
                    len += push_slice(&mut self.flights[C], &m.segs, from, to);
                    let t = self.think();
                    self.push_data(C, len, t, true);
                    let r = self.mark();
                    if last {
                        self.queued_reply(&m);
                    } else {
                        let _ = write!(
                            self.local,
                            "250 2.0.0 Ok: {} octets received\r\n",
                            to - from
                        );
                    }
                    let d = self.reply_delay(last);
                    self.send_local(S, r, d);
                    self.maybe_client_ack();
                } else {
                    if spans {
                        let end = self.stream_off(S);
                        self.span.as_mut().expect("span").end = (S, end);
                    }
                    let c = self.mark();
                    self.local.extend_from_slice(b"BDAT 0 LAST\r\n");
                    let r = self.mark();
                    self.queued_reply(&m);
                    self.exchange(c, r, true);
                }
                m.step += 1;
                m.step > n_chunks + m.zero_last as u32
            }
        };
        if done {
            self.msgs_done += 1;
            self.rset_done = false;
            self.emit_span(ctx);
        } else {
            self.msg = Some(m);
        }
    }

    pub(super) fn mail_cmd(&mut self, m: &Msg) {
        // BODY=8BITMIME for BDAT too: the server does not offer BINARYMIME.
        let _ = write!(
            self.local,
            "MAIL FROM:<{}> SIZE={} BODY=8BITMIME\r\n",
            m.mailfrom, m.len
        );
    }

    pub(super) fn rcpt_cmd(&mut self, m: &Msg, i: usize) {
        let _ = write!(self.local, "RCPT TO:<{}>\r\n", m.rcpts[i]);
    }

    /// Where the transaction of the next message ends (always at the end
    /// of data in a gap session, whose one message must be transferred).
    pub(super) fn draw_fate(&mut self, cfg: &GenConfig) -> Fate {
        let mix = &cfg.mix;
        if self.gap {
            Fate::Data
        } else if mix.mail_reject > 0 && self.rng.pct(mix.mail_reject as u32) {
            Fate::MailRejected
        } else if mix.rcpt_reject > 0 && self.rng.pct(mix.rcpt_reject as u32) {
            Fate::RcptRejected
        } else {
            Fate::Data
        }
    }

    pub(super) fn mail_reply(&mut self, m: &Msg) {
        if m.fate != Fate::MailRejected {
            self.local.extend_from_slice(b"250 2.1.0 Ok\r\n");
            return;
        }
        let _ = match m.qid % 4 {
            0 => write!(
                self.local,
                "553 5.7.1 <{}>: Sender address rejected: not owned by user\r\n",
                m.mailfrom
            ),
            1 => write!(
                self.local,
                "550 5.7.1 <{}>: Sender address rejected: Access denied\r\n",
                m.mailfrom
            ),
            2 => write!(self.local, "501 5.1.7 Bad sender address syntax\r\n"),
            _ => write!(
                self.local,
                "450 4.1.8 <{}>: Sender address rejected: Domain not found\r\n",
                m.mailfrom
            ),
        };
    }

    pub(super) fn rcpt_reply(&mut self, m: &Msg, i: usize) {
        match m.fate {
            Fate::Data => {}
            Fate::MailRejected => {
                self.local
                    .extend_from_slice(b"503 5.5.1 Error: need MAIL command\r\n");
                return;
            }
            Fate::RcptRejected => {
                let r = &m.rcpts[i];
                let _ = match (m.qid >> 8) % 3 {
                    0 => write!(
                        self.local,
                        "550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table\r\n"
                    ),
                    1 => write!(
                        self.local,
                        "450 4.2.0 <{r}>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/help/{}.html\r\n",
                        r.rsplit('@').next().unwrap_or("")
                    ),
                    _ => write!(self.local, "554 5.7.1 <{r}>: Relay access denied\r\n"),
                };
                return;
            }
        }
        if m.rejected == Some(i) {
            let _ = write!(
                self.local,
                "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table\r\n",
                m.rcpts[i]
            );
        } else {
            self.local.extend_from_slice(b"250 2.1.5 Ok\r\n");
        }
    }

    pub(super) fn queued_reply(&mut self, m: &Msg) {
        match m.status {
            250 => {}
            552 => {
                self.local
                    .extend_from_slice(b"552 5.3.4 Message size exceeds fixed limit\r\n");
                return;
            }
            _ => {
                let _ = write!(
                    self.local,
                    "{} 5.7.1 Message rejected: content policy violation\r\n",
                    m.status
                );
                return;
            }
        }
        self.local.extend_from_slice(b"250 2.0.0 Ok: queued as ");
        hex_into(&mut self.local, m.qid, 10, true);
        self.local.extend_from_slice(b"\r\n");
    }

    /// Records where the DATA transfer `send_body` queues next will lie.
    pub(super) fn body_span(&mut self, spans: bool, m: &Msg) {
        if !spans {
            return;
        }
        let d0 = self.stream_off(C);
        let len = m.segs.iter().map(|s| s.len() as u64).sum::<u64>();
        let end = self.stream_off(S);
        let sp = self.span.as_mut().expect("span");
        sp.data.push((d0, d0 + len));
        sp.end = (S, end);
    }

    /// DATA transfer: the dot-stuffed message, `.` CRLF, then the reply.
    pub(super) fn send_body(&mut self, m: &Msg) {
        self.drop_pending = self.gap;
        for s in &m.segs {
            self.flights[C].push_back(*s);
        }
        let a = self.mark();
        self.local.extend_from_slice(b".\r\n");
        self.flights[C].push_back(Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: self.local.len() as u32,
        });
        let len = m.segs.iter().map(|s| s.len() as u64).sum::<u64>() + 3;
        let t = self.think();
        self.push_data(C, len, t, true);
        let r = self.mark();
        self.queued_reply(m);
        let d = self.reply_delay(true);
        self.send_local(S, r, d);
        self.maybe_client_ack();
    }
}
