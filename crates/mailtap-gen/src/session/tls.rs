//! The realistic TLS script of a STARTTLS session (`TlsStyle::Realistic`):
//! after `220 Ready to start TLS`, a TLS 1.2 or 1.3 handshake whose
//! cleartext parts parse (a ClientHello with SNI, supported_versions and
//! key_share; the ServerHello; for TLS 1.2 the Certificate chain,
//! ServerKeyExchange, ServerHelloDone, ClientKeyExchange and session
//! ticket), then the SMTP dialogue and the messages as application-data
//! records, then close_notify alerts and the FIN exchange.
//!
//! Every record is `type, 0x03 0x03, length` with a consistent length;
//! encrypted contents are slices of the opaque pool. Application data is
//! sized from the plaintext it carries: at most `rec_max` (16 KiB, or 4 KiB
//! for a client writing in small buffers) plaintext bytes per record plus
//! the AEAD overhead (TLS 1.3: content type + 16-byte tag; TLS 1.2
//! AES-GCM: 8-byte explicit nonce + 16-byte tag), segmented by MSS like
//! any bulk data (the peer acknowledges every second segment).

use super::{body_size, Ctx, Fate, Item, Kind, Mode, Session, Stage, C, S};
use crate::pool::{Pools, Seg, SRC_LOCAL};
use crate::rng::Rng;

const HANDSHAKE: u8 = 22;
const CCS: u8 = 20;
const ALERT: u8 = 21;
const APP: u8 = 23;

/// What OpenSSL 3 offers by default (TLS 1.3 suites first).
const SUITES: [u16; 31] = [
    0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0x009f, 0xcca9, 0xcca8, 0xccaa, 0xc02b, 0xc02f, 0x009e,
    0xc024, 0xc028, 0x006b, 0xc023, 0xc027, 0x0067, 0xc00a, 0xc014, 0x0039, 0xc009, 0xc013, 0x0033,
    0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f, 0x00ff,
];
const SIG_ALGS: [u16; 20] = [
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080a, 0x080b, 0x0804, 0x0805, 0x0806, 0x0401,
    0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602,
];
const GROUPS: [u16; 5] = [0x001d, 0x0017, 0x001e, 0x0019, 0x0018];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Handshake,
    Ehlo,
    Auth,
    Mail,
    Quit,
    Close,
}

/// One SMTP transaction inside TLS: only sizes matter.
#[derive(Clone, Copy, Debug)]
struct Txn {
    step: u32,
    rcpts: u32,
    /// Message bytes.
    len: u64,
    fate: Fate,
    /// Plaintext lengths of `MAIL FROM`, of all `RCPT TO`s and of the
    /// reply to the end of data.
    mail: u64,
    rcpt_cmds: u64,
    end_reply: u64,
}

pub(crate) struct Tls {
    v13: bool,
    /// Plaintext bytes per application-data record, at most.
    rec_max: usize,
    /// Bytes of certificate chain (each DER certificate).
    certs: [u16; 3],
    n_certs: usize,
    step: Step,
    txn: Option<Txn>,
}

impl Tls {
    pub(crate) fn new(rng: &mut Rng, tls13_pct: u8) -> Self {
        let v13 = rng.pct(tls13_pct as u32);
        // Most writers fill 16 KiB records; some write through 4 KiB
        // buffers.
        let rec_max = if rng.pct(75) { 16_384 } else { 4_096 };
        // leaf, intermediate, sometimes a cross-signed root: 2-5 kB
        let n_certs = if rng.pct(25) { 3 } else { 2 };
        let certs = [
            rng.range(1_100, 1_900) as u16,
            rng.range(1_000, 1_500) as u16,
            rng.range(800, 1_400) as u16,
        ];
        Tls {
            v13,
            rec_max,
            certs,
            n_certs,
            step: Step::Handshake,
            txn: None,
        }
    }

    /// AEAD expansion of one application-data record.
    fn overhead(&self) -> usize {
        if self.v13 {
            17
        } else {
            24
        }
    }
}

/// Decimal digits of `n`.
fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl Session {
    fn t(&mut self) -> &mut Tls {
        self.tls.as_deref_mut().expect("TLS session")
    }

    fn put16(&mut self, v: usize) {
        self.local.extend_from_slice(&(v as u16).to_be_bytes());
    }

    fn put24(&mut self, v: usize) {
        self.local
            .extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
    }

    /// Writes a 16- or 24-bit length at `at` covering `local[at + w..]`.
    fn patch_len(&mut self, at: usize, w: usize) {
        let n = self.local.len() - at - w;
        let b = (n as u32).to_be_bytes();
        self.local[at..at + w].copy_from_slice(&b[4 - w..]);
    }

    fn random_bytes(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let v = self.rng.next_u64().to_le_bytes();
            let k = left.min(8);
            self.local.extend_from_slice(&v[..k]);
            left -= k;
        }
    }

    /// Queues `local[a..]` for `dir` (no plan item).
    fn queue_local(&mut self, dir: usize, a: usize) -> u64 {
        let seg = Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: self.local.len() as u32,
        };
        self.flights[dir].push_back(seg);
        seg.len() as u64
    }

    /// A one-byte ChangeCipherSpec record.
    fn ccs(&mut self, dir: usize) -> u64 {
        let a = self.mark();
        self.local.extend_from_slice(&[CCS, 3, 3, 0, 1, 1]);
        self.queue_local(dir, a)
    }

    /// Application-data records carrying `plain` bytes.
    fn app_records(&mut self, pools: &Pools, dir: usize, plain: u64) -> u64 {
        let (max, over) = {
            let t = self.t();
            (t.rec_max as u64, t.overhead())
        };
        let mut left = plain.max(1);
        let mut len = 0;
        while left > 0 {
            let n = left.min(max);
            len += self.tls_record(pools, dir, APP, 3, n as usize + over);
            left -= n;
        }
        len
    }

    /// One encrypted command/reply round trip.
    fn tls_exchange(&mut self, pools: &Pools, client: u64, server: u64, slow: bool) {
        let len = self.app_records(pools, C, client);
        let t = self.think();
        self.push_data(C, len, t, len > 3_000);
        let len = self.app_records(pools, S, server);
        let d = self.reply_delay(slow);
        self.push_data(S, len, d, len > 3_000);
        self.maybe_client_ack();
    }

    pub(super) fn tls_step(&mut self, ctx: &mut Ctx) {
        let pools = ctx.pools;
        match self.t().step {
            Step::Handshake => {
                self.tls_on = true;
                self.client_hello();
                self.server_flight(pools);
                self.client_finish(pools);
                self.t().step = Step::Ehlo;
            }
            Step::Ehlo => {
                // the EHLO reply again, without STARTTLS
                let c = 7 + self.helo.len() as u64;
                let s = 188 + self.server.len() as u64 + self.helo.len() as u64;
                self.tls_exchange(pools, c, s, false);
                self.t().step = if self.auth != super::Auth::None {
                    Step::Auth
                } else {
                    Step::Mail
                };
            }
            Step::Auth => {
                // AUTH PLAIN <base64(\0user\0password)>
                let cred = 2 + 2 * self.sender.len() + 10;
                let c = 11 + 4 * cred.div_ceil(3) as u64 + 2;
                self.tls_exchange(pools, c, 37, false);
                self.t().step = Step::Mail;
            }
            Step::Mail => self.tls_mail(ctx),
            Step::Quit => {
                self.tls_exchange(pools, 6, 15, false);
                self.t().step = Step::Close;
            }
            Step::Close => {
                let (ctype, len) = if self.t().v13 { (APP, 19) } else { (ALERT, 26) };
                let n = self.tls_record(pools, C, ctype, 3, len);
                let t = self.think();
                self.push_data(C, n, t, false);
                let n = self.tls_record(pools, S, ctype, 3, len);
                let d = self.rtt + self.rng.range32(10, 300);
                self.push_data(S, n, d, false);
                let d1 = self.rng.range32(5, 100);
                let d2 = self.rtt + self.rng.range32(10, 300);
                let d3 = self.rtt;
                for (dir, kind, delay) in
                    [(C, Kind::Fin, d1), (S, Kind::Fin, d2), (C, Kind::Ack, d3)]
                {
                    self.plan.push_back(Item {
                        dir: dir as u8,
                        kind,
                        delay,
                    });
                }
                self.stage = Stage::Done;
            }
        }
    }

    /// ClientHello: what an OpenSSL-based MTA sends, padded to 300-560
    /// bytes.
    fn client_hello(&mut self) {
        let a = self.mark();
        self.local.extend_from_slice(&[HANDSHAKE, 3, 3, 0, 0]);
        let hs = self.mark();
        self.local.extend_from_slice(&[1, 0, 0, 0, 3, 3]);
        self.random_bytes(32);
        self.local.push(32);
        self.random_bytes(32);
        let n = self.rng.range(9, SUITES.len() as u64) as usize;
        self.put16(2 * n);
        for s in &SUITES[SUITES.len() - n..] {
            self.put16(*s as usize);
        }
        // TLS 1.3 suites always offered (first), then the rest
        let at = self.local.len() - 2 * n;
        for (i, s) in SUITES[..3].iter().enumerate() {
            self.local[at + 2 * i..at + 2 * i + 2].copy_from_slice(&s.to_be_bytes());
        }
        self.local.extend_from_slice(&[1, 0]); // compression: null
        let ext = self.mark();
        self.put16(0);
        // server_name
        let name = std::mem::take(&mut self.server);
        self.put16(0x0000);
        self.put16(name.len() + 5);
        self.put16(name.len() + 3);
        self.local.push(0);
        self.put16(name.len());
        self.local.extend_from_slice(name.as_bytes());
        self.server = name;
        // ec_point_formats
        self.local
            .extend_from_slice(&[0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02]);
        // supported_groups
        self.put16(0x000a);
        self.put16(2 + 2 * GROUPS.len());
        self.put16(2 * GROUPS.len());
        for g in GROUPS {
            self.put16(g as usize);
        }
        // session_ticket, encrypt_then_mac, extended_master_secret
        self.local.extend_from_slice(&[
            0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00,
        ]);
        // signature_algorithms
        self.put16(0x000d);
        self.put16(2 + 2 * SIG_ALGS.len());
        self.put16(2 * SIG_ALGS.len());
        for s in SIG_ALGS {
            self.put16(s as usize);
        }
        // supported_versions: 1.3, 1.2
        self.local
            .extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
        // psk_key_exchange_modes: psk_dhe_ke
        self.local
            .extend_from_slice(&[0x00, 0x2d, 0x00, 0x02, 0x01, 0x01]);
        // key_share: x25519
        self.local
            .extend_from_slice(&[0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
        self.random_bytes(32);
        // padding up to the target record size
        let target = a + self.rng.range(300, 560) as usize;
        if target >= self.local.len() + 4 {
            let pad = target - self.local.len() - 4;
            self.put16(0x0015);
            self.put16(pad);
            self.local.resize(self.local.len() + pad, 0);
        }
        self.patch_len(ext, 2);
        self.patch_len(hs + 1, 3);
        self.patch_len(a + 3, 2);
        let t = self.think().min(500);
        self.send_local(C, a, t);
    }

    /// ServerHello and the rest of the server's first flight (2-5 kB).
    fn server_flight(&mut self, pools: &Pools) {
        let v13 = self.t().v13;
        // the client's session id, to echo (TLS 1.3 middlebox compatibility)
        let hello = self.flights[C].back().expect("ClientHello").start as usize;
        let sid_at = hello + 5 + 4 + 2 + 32 + 1;
        let a = self.mark();
        self.local.extend_from_slice(&[HANDSHAKE, 3, 3, 0, 0]);
        let hs = self.mark();
        self.local.extend_from_slice(&[2, 0, 0, 0, 3, 3]);
        self.random_bytes(32);
        self.local.push(32);
        if v13 {
            self.local.extend_from_within(sid_at..sid_at + 32);
        } else {
            self.random_bytes(32);
        }
        self.put16(if v13 { 0x1302 } else { 0xc030 });
        self.local.push(0);
        let ext = self.mark();
        self.put16(0);
        if v13 {
            self.local
                .extend_from_slice(&[0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
            self.local
                .extend_from_slice(&[0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
            self.random_bytes(32);
        } else {
            self.local.extend_from_slice(&[
                0xff, 0x01, 0x00, 0x01, 0x00, // renegotiation_info
                0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, // ec_point_formats
                0x00, 0x23, 0x00, 0x00, // session_ticket
                0x00, 0x17, 0x00, 0x00, // extended_master_secret
            ]);
        }
        self.patch_len(ext, 2);
        self.patch_len(hs + 1, 3);
        self.patch_len(a + 3, 2);
        let mut len = self.queue_local(S, a);
        let (certs, n_certs) = {
            let t = self.t();
            (t.certs, t.n_certs)
        };
        let chain: usize = certs[..n_certs].iter().map(|&c| c as usize).sum();
        if v13 {
            len += self.ccs(S);
            // EncryptedExtensions, Certificate, CertificateVerify, Finished
            let ee = self.rng.range(6, 40) as usize;
            len += self.tls_record(pools, S, APP, 3, 4 + ee + 17);
            len += self.tls_record(pools, S, APP, 3, 4 + 1 + 3 + chain + 5 * n_certs + 17);
            len += self.tls_record(pools, S, APP, 3, 4 + 4 + 256 + 17);
            len += self.tls_record(pools, S, APP, 3, 4 + 48 + 17);
        } else {
            // Certificate: the chain in the clear, each a DER SEQUENCE
            let b = self.mark();
            self.local.extend_from_slice(&[HANDSHAKE, 3, 3]);
            self.put16(4 + 3 + chain + 3 * n_certs);
            self.local.push(11);
            self.put24(3 + chain + 3 * n_certs);
            self.put24(chain + 3 * n_certs);
            let mut from = b;
            for &c in &certs[..n_certs] {
                let c = c as usize;
                self.put24(c);
                self.local.extend_from_slice(&[0x30, 0x82]);
                self.put16(c - 4);
                len += self.queue_local(S, from);
                self.push_opaque(pools, S, c - 4);
                len += c as u64 - 4;
                from = self.mark();
            }
            // ServerKeyExchange: x25519 key, RSA-PSS signature
            let b = self.mark();
            self.local.extend_from_slice(&[HANDSHAKE, 3, 3]);
            self.put16(4 + 4 + 32 + 4 + 256);
            self.local.push(12);
            self.put24(4 + 32 + 4 + 256);
            self.local.extend_from_slice(&[3, 0x00, 0x1d, 32]);
            self.random_bytes(32);
            self.local.extend_from_slice(&[0x08, 0x04, 0x01, 0x00]);
            len += self.queue_local(S, b);
            self.push_opaque(pools, S, 256);
            len += 256;
            // ServerHelloDone
            let b = self.mark();
            self.local
                .extend_from_slice(&[HANDSHAKE, 3, 3, 0, 4, 14, 0, 0, 0]);
            len += self.queue_local(S, b);
        }
        let d = self.reply_delay(false);
        self.push_data(S, len, d, true);
    }

    /// The client's second flight and the server's answer (TLS 1.2:
    /// session ticket, ChangeCipherSpec, Finished; TLS 1.3: two session
    /// tickets).
    fn client_finish(&mut self, pools: &Pools) {
        let v13 = self.t().v13;
        let mut len = 0;
        if v13 {
            len += self.ccs(C);
            len += self.tls_record(pools, C, APP, 3, 4 + 48 + 17);
        } else {
            let a = self.mark();
            self.local
                .extend_from_slice(&[HANDSHAKE, 3, 3, 0, 37, 16, 0, 0, 33, 32]);
            self.random_bytes(32);
            len += self.queue_local(C, a);
            len += self.ccs(C);
            len += self.tls_record(pools, C, HANDSHAKE, 3, 40);
        }
        let t = self.think().min(2_000);
        self.push_data(C, len, t, false);
        let mut len = 0;
        if v13 {
            for _ in 0..2 {
                let n = self.rng.range(230, 260) as usize;
                len += self.tls_record(pools, S, APP, 3, n);
            }
        } else {
            let ticket = self.rng.range(160, 200) as usize;
            let a = self.mark();
            self.local.extend_from_slice(&[HANDSHAKE, 3, 3]);
            self.put16(4 + 4 + 2 + ticket);
            self.local.push(4);
            self.put24(4 + 2 + ticket);
            self.local.extend_from_slice(&[0x00, 0x00, 0x1c, 0x20]);
            self.put16(ticket);
            len += self.queue_local(S, a);
            self.push_opaque(pools, S, ticket);
            len += ticket as u64;
            len += self.ccs(S);
            len += self.tls_record(pools, S, HANDSHAKE, 3, 40);
        }
        let d = self.reply_delay(false);
        self.push_data(S, len, d, false);
    }

    /// The next step of the encrypted transactions (as `mail_step`, with
    /// sizes only).
    fn tls_mail(&mut self, ctx: &mut Ctx) {
        let pools = ctx.pools;
        if self.t().txn.is_none() {
            if self.msgs_done >= self.n_msgs {
                self.t().step = Step::Quit;
                return self.tls_step(ctx);
            }
            let cfg = ctx.cfg;
            let rcpts = self.rng.range32(cfg.recipients.0, cfg.recipients.1).max(1);
            let hdr = self.rng.range(700, 1_800);
            let len = hdr + body_size(&mut self.rng, cfg) as u64;
            let fate = self.draw_fate(cfg);
            let mail = 11 + self.rng.range(14, 34) + 7 + digits(len) as u64 + 16;
            let mut rcpt_cmds = 0;
            for _ in 0..rcpts {
                rcpt_cmds += 12 + self.rng.range(14, 34);
            }
            let end_reply = if self.rng.pct(cfg.mix.reject as u32) {
                62
            } else {
                37
            };
            self.t().txn = Some(Txn {
                step: 0,
                rcpts,
                len,
                fate,
                mail,
                rcpt_cmds,
                end_reply,
            });
        }
        let mut x = self.t().txn.take().expect("transaction");
        let k = x.rcpts;
        let (mail, rcpt_cmds, end_reply) = (x.mail, x.rcpt_cmds, x.end_reply);
        let mail_reply = if x.fate == Fate::MailRejected { 64 } else { 14 };
        let rcpt_reply = match x.fate {
            Fate::Data => 14,
            Fate::MailRejected => 36,
            Fate::RcptRejected => 90,
        };
        let data_reply = match x.fate {
            Fate::Data => 37,
            _ => 38,
        };
        let done = match self.mode {
            Mode::Plain => {
                if x.step == 0 {
                    self.tls_exchange(pools, mail, mail_reply, false);
                } else if x.step <= k {
                    let c = rcpt_cmds / k as u64;
                    self.tls_exchange(pools, c, rcpt_reply, false);
                } else if x.step == k + 1 {
                    self.tls_exchange(pools, 6, 37, false);
                } else {
                    self.tls_message(pools, x.len + 3, end_reply);
                }
                x.step += 1;
                x.step > k + 2
                    || (x.fate == Fate::MailRejected && x.step == 1)
                    || (x.fate == Fate::RcptRejected && x.step == k + 1)
            }
            Mode::Pipelined | Mode::Bdat => {
                let bdat = self.mode == Mode::Bdat;
                if x.step == 0 {
                    let c = mail + rcpt_cmds + if bdat { 0 } else { 6 };
                    let s = mail_reply + k as u64 * rcpt_reply + if bdat { 0 } else { data_reply };
                    self.tls_exchange(pools, c, s, false);
                } else {
                    let cmd = if bdat { 12 + digits(x.len) as u64 } else { 3 };
                    self.tls_message(pools, x.len + cmd, end_reply);
                }
                x.step += 1;
                x.step > 1 || x.fate != Fate::Data
            }
        };
        if done {
            self.msgs_done += 1;
        } else {
            self.t().txn = Some(x);
        }
    }

    /// The message (and its terminator or BDAT command) as bulk
    /// application data, then the reply to the end of data.
    fn tls_message(&mut self, pools: &Pools, plain: u64, reply: u64) {
        self.tls_messages += 1;
        let len = self.app_records(pools, C, plain);
        let t = self.think();
        self.push_data(C, len, t, true);
        let len = self.app_records(pools, S, reply);
        let d = self.reply_delay(true);
        self.push_data(S, len, d, false);
        self.maybe_client_ack();
    }
}
