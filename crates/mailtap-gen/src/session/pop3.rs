//! The POP3 script of a session (port 110, plaintext): greeting, CAPA,
//! login (USER/PASS, sometimes failing first; APOP; AUTH PLAIN with a SASL
//! continuation), STAT, LIST, UIDL, `RETR`/`TOP` of the maildrop's
//! messages (dot-stuffed multi-line responses), DELE, QUIT.

use std::io::Write as _;

use super::{Ctx, Session, C, S};
use crate::pool::{Seg, SRC_LOCAL, SRC_TEXT_STUFFED};
use crate::rng::Rng;
use crate::text::{base64_into, hex_into, FIRST, LAST};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Login {
    UserPass,
    /// A wrong password first (`-ERR`), then the right one.
    UserPassRetry,
    Apop,
    SaslPlain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetch {
    Retr,
    Top(u32),
    TopThenRetr(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Greeting,
    Capa,
    Login,
    Stat,
    List,
    Uidl,
    Fetch,
    Quit,
}

pub(crate) struct Pop3 {
    pub(crate) user: String,
    login: Login,
    step: Step,
    capa: bool,
    uidl: bool,
    /// Maildrop sizes as LIST reports them (approximate).
    sizes: Vec<u64>,
    uids: Vec<u64>,
    fetches: Vec<(u32, Fetch, bool)>,
    next: usize,
    /// The last multi-line response: client offset of its command, server
    /// offset of its status line, its data's server stream range.
    last: Option<(u64, u64, (u64, u64))>,
}

impl Pop3 {
    pub(crate) fn new(rng: &mut Rng, n: u32, sender: &str) -> Self {
        let user = if rng.pct(50) {
            format!("{}.{}", rng.pick(FIRST), rng.pick(LAST))
        } else {
            // a mailbox named by address, not the SMTP sender
            let local = sender.split('@').next().unwrap_or("user");
            format!("{local}{}@pop.example.net", rng.below(100))
        };
        let login = match rng.below(10) {
            0..=3 => Login::UserPass,
            4..=5 => Login::UserPassRetry,
            6..=7 => Login::Apop,
            _ => Login::SaslPlain,
        };
        let sizes = (0..n).map(|_| rng.range(800, 40_000)).collect();
        let uids = (0..n).map(|_| rng.next_u64()).collect();
        let fetches = (1..=n)
            .map(|i| {
                let f = match rng.below(100) {
                    0..=11 => Fetch::Top(rng.range32(0, 12)),
                    12..=21 => Fetch::TopThenRetr(rng.range32(0, 12)),
                    _ => Fetch::Retr,
                };
                (i, f, f != Fetch::Top(0) && rng.pct(50))
            })
            .collect();
        Pop3 {
            user,
            login,
            step: Step::Greeting,
            capa: rng.pct(70),
            uidl: rng.pct(60),
            sizes,
            uids,
            fetches,
            next: 0,
            last: None,
        }
    }
}

impl Session {
    fn p3(&mut self) -> &mut Pop3 {
        self.pop3.as_deref_mut().expect("POP3 session")
    }

    /// Client line `cmd`, then server lines `reply`, as one round trip.
    fn p3_exchange(&mut self, cmd: &[u8], reply: &[u8]) {
        let c = self.mark();
        self.local.extend_from_slice(cmd);
        let r = self.mark();
        self.local.extend_from_slice(reply);
        self.exchange(c, r, false);
    }

    pub(super) fn pop3_step(&mut self, ctx: &mut Ctx) {
        let step = self.p3().step;
        match step {
            Step::Greeting => {
                let a = self.mark();
                let apop = self.p3().login == Login::Apop;
                if apop || self.rng.pct(30) {
                    let pid = self.rng.range(1000, 60_000);
                    let _ = write!(
                        self.local,
                        "+OK POP3 server ready <{pid}.{}@{}>\r\n",
                        ctx.now_us / 1_000_000,
                        self.server
                    );
                } else {
                    self.local
                        .extend_from_slice(b"+OK Dovecot (Debian) ready.\r\n");
                }
                let d = self.rng.range32(300, 5_000);
                self.send_local(S, a, d);
                self.maybe_client_ack();
                self.p3().step = if self.p3().capa {
                    Step::Capa
                } else {
                    Step::Login
                };
            }
            Step::Capa => {
                self.p3_exchange(
                    b"CAPA\r\n",
                    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n",
                );
                self.p3().step = Step::Login;
            }
            Step::Login => {
                let user = self.p3().user.clone();
                let pass = format!("pw{:08x}", self.rng.next_u64() as u32);
                match self.p3().login {
                    Login::UserPass | Login::UserPassRetry => {
                        if self.p3().login == Login::UserPassRetry {
                            let bad = format!("PASS wrong{:04x}\r\n", self.rng.below(65536));
                            self.p3_exchange(format!("USER {user}\r\n").as_bytes(), b"+OK\r\n");
                            self.p3_exchange(
                                bad.as_bytes(),
                                b"-ERR [AUTH] Authentication failed.\r\n",
                            );
                        }
                        self.p3_exchange(format!("USER {user}\r\n").as_bytes(), b"+OK\r\n");
                        self.p3_exchange(
                            format!("PASS {pass}\r\n").as_bytes(),
                            b"+OK Logged in.\r\n",
                        );
                    }
                    Login::Apop => {
                        let mut cmd = format!("APOP {user} ").into_bytes();
                        hex_into(&mut cmd, self.rng.next_u64(), 16, false);
                        hex_into(&mut cmd, self.rng.next_u64(), 16, false);
                        cmd.extend_from_slice(b"\r\n");
                        self.p3_exchange(&cmd, b"+OK Logged in.\r\n");
                    }
                    Login::SaslPlain => {
                        self.p3_exchange(b"AUTH PLAIN\r\n", b"+ \r\n");
                        let mut cred = Vec::new();
                        base64_into(&mut cred, format!("\0{user}\0{pass}").as_bytes());
                        cred.extend_from_slice(b"\r\n");
                        self.p3_exchange(&cred, b"+OK Logged in.\r\n");
                    }
                }
                self.p3().step = Step::Stat;
            }
            Step::Stat => {
                let p = self.p3();
                let reply = format!("+OK {} {}\r\n", p.sizes.len(), p.sizes.iter().sum::<u64>());
                self.p3_exchange(b"STAT\r\n", reply.as_bytes());
                self.p3().step = Step::List;
            }
            Step::List => {
                let p = self.p3();
                let mut reply = format!(
                    "+OK {} messages ({} octets)\r\n",
                    p.sizes.len(),
                    p.sizes.iter().sum::<u64>()
                );
                for (i, s) in p.sizes.iter().enumerate() {
                    let _ =
                        std::fmt::Write::write_fmt(&mut reply, format_args!("{} {s}\r\n", i + 1));
                }
                reply.push_str(".\r\n");
                self.p3_exchange(b"LIST\r\n", reply.as_bytes());
                self.p3().step = if self.p3().uidl {
                    Step::Uidl
                } else {
                    Step::Fetch
                };
            }
            Step::Uidl => {
                let p = self.p3();
                let mut reply = b"+OK\r\n".to_vec();
                for (i, u) in p.uids.iter().enumerate() {
                    let _ = write!(reply, "{} ", i + 1);
                    hex_into(&mut reply, *u, 16, false);
                    reply.extend_from_slice(b"\r\n");
                }
                reply.extend_from_slice(b".\r\n");
                self.p3_exchange(b"UIDL\r\n", &reply);
                self.p3().step = Step::Fetch;
            }
            Step::Fetch => {
                let p = self.p3();
                let Some(&(i, fetch, dele)) = p.fetches.get(p.next) else {
                    self.p3().step = Step::Quit;
                    return self.pop3_step(ctx);
                };
                p.next += 1;
                let m = self.build_message(ctx);
                if let Fetch::Top(k) | Fetch::TopThenRetr(k) = fetch {
                    self.p3_top(ctx, &m, i, k);
                }
                if matches!(fetch, Fetch::Retr | Fetch::TopThenRetr(_)) {
                    let c = self.mark();
                    let _ = write!(self.local, "RETR {i}\r\n");
                    let r = self.mark();
                    let _ = write!(self.local, "+OK {} octets\r\n", m.len);
                    let segs = m.segs.clone();
                    let spans = ctx.on_span.is_some();
                    self.p3_multiline(c, r, &segs);
                    let len = ctx.truth_buf.len();
                    self.report(ctx, &m, len, false);
                    self.p3_span(ctx, spans);
                }
                if dele {
                    self.p3_exchange(
                        format!("DELE {i}\r\n").as_bytes(),
                        b"+OK Marked to be deleted.\r\n",
                    );
                }
            }
            Step::Quit if self.abandon => {
                self.unclosed = true;
                self.stage = super::Stage::Done;
            }
            Step::Quit => {
                self.p3_exchange(b"QUIT\r\n", b"+OK Logging out.\r\n");
                self.teardown_server_first();
                self.stage = super::Stage::Done;
            }
        }
    }

    /// `TOP i k`: the header block and the first `k` lines of a plain
    /// body (a MIME message: the header block only).
    fn p3_top(&mut self, ctx: &mut Ctx, m: &super::Msg, i: u32, k: u32) {
        let pools = ctx.pools;
        let head = m.segs[0];
        let mut segs = vec![Seg {
            src: SRC_LOCAL,
            start: head.start,
            end: head.start + (m.hdr_end as u32).min(head.len()),
        }];
        let mut raw = m.hdr_end.min(head.len() as u64);
        if m.plain_body && k > 0 && m.segs[1].src == SRC_TEXT_STUFFED {
            let b = m.segs[1];
            let st = &pools.text_stuffed.lines;
            let a = st.partition_point(|&x| x < b.start);
            let e = st.partition_point(|&x| x < b.end);
            let n = (k as usize).min(e - a);
            segs.push(Seg {
                src: SRC_TEXT_STUFFED,
                start: st[a],
                end: st[a + n],
            });
            raw += (pools.text.lines[a + n] - pools.text.lines[a]) as u64;
        }
        let c = self.mark();
        let _ = write!(self.local, "TOP {i} {k}\r\n");
        let r = self.mark();
        self.local
            .extend_from_slice(b"+OK Top of message follows\r\n");
        let spans = ctx.on_span.is_some();
        self.p3_multiline(c, r, &segs);
        if ctx.on_message.is_some() {
            debug_assert!(raw as usize <= ctx.truth_buf.len());
        }
        self.report(ctx, m, raw as usize, true);
        self.p3_span(ctx, spans);
    }

    /// Reports the span of the response `p3_multiline` queued last.
    fn p3_span(&mut self, ctx: &mut Ctx, spans: bool) {
        if let (true, Some((cmd, status, data))) = (spans, self.p3().last) {
            let mut sp = self.new_span(S, cmd);
            sp.data_mark = (S, status);
            sp.data.push(data);
            sp.end = (S, data.1);
            self.span = Some(sp);
            self.emit_span(ctx);
        }
    }

    /// Client command local[c..r]; server status line local[r..] followed
    /// by the dot-stuffed `segs` and `.` CRLF.
    fn p3_multiline(&mut self, c: usize, r: usize, segs: &[Seg]) {
        let status_end = self.mark();
        let (c_off, s_off) = (self.stream_off(C), self.stream_off(S));
        let d0 = s_off + (status_end - r) as u64;
        let len = segs.iter().map(|s| s.len() as u64).sum::<u64>();
        self.p3().last = Some((c_off, s_off, (d0, d0 + len)));
        self.local.extend_from_slice(b".\r\n");
        let dot_end = self.mark();
        let cmd = Seg {
            src: SRC_LOCAL,
            start: c as u32,
            end: r as u32,
        };
        self.flights[C].push_back(cmd);
        let t = self.think();
        self.push_data(C, cmd.len() as u64, t, false);
        self.flights[S].push_back(Seg {
            src: SRC_LOCAL,
            start: r as u32,
            end: status_end as u32,
        });
        let mut total = (status_end - r) as u64;
        for s in segs {
            self.flights[S].push_back(*s);
            total += s.len() as u64;
        }
        self.flights[S].push_back(Seg {
            src: SRC_LOCAL,
            start: status_end as u32,
            end: dot_end as u32,
        });
        total += 3;
        let d = self.reply_delay(false);
        self.push_data(S, total, d, true);
        self.maybe_client_ack();
    }
}
