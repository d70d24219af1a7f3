//! Message composition: envelope, headers (RFC 5322, encoded words) and
//! MIME bodies (text parts, quoted-printable and base64 attachments) as
//! slices of the shared pools.
use super::*;

impl Session {
    /// Builds the next message (headers into `local`, body as pool slices)
    /// and returns its transfer state; its bytes are in `ctx.truth_buf`
    /// when a truth callback is set.
    pub(super) fn build_message(&mut self, ctx: &mut Ctx) -> Msg {
        let cfg = ctx.cfg;
        let pools = ctx.pools;
        let want_truth = ctx.on_message.is_some();
        // DATA and POP3 dot-stuff the body; BDAT chunks and IMAP literals
        // carry it as it is.
        let stuffed = self.mode != Mode::Bdat && self.imap.is_none();
        let truth = &mut *ctx.truth_buf;
        truth.clear();
        let rng = &mut self.rng;

        let mailfrom = if rng.pct(75) {
            self.sender.clone()
        } else {
            address(rng)
        };
        let k = rng.range32(cfg.recipients.0, cfg.recipients.1).max(1) as usize;
        let mut rcpts: Vec<String> = Vec::with_capacity(k);
        while rcpts.len() < k {
            let a = address(rng);
            if !rcpts.contains(&a) || rcpts.len() >= FIRST.len() * LAST.len() {
                rcpts.push(a);
            }
        }
        let rejected = if k >= 2 && rng.pct(15) {
            Some(rng.below(k as u64) as usize)
        } else {
            None
        };
        let mut body_len = body_size(rng, cfg);
        if self.gap {
            // room for a dropped segment well inside the message
            body_len = body_len.max(6 * cfg.mss);
        }
        let attach = rng.pct(cfg.mix.mime_attachment as u32) || body_len >= cfg.shape.attach_above;
        let qid = rng.next_u64() & 0xff_ffff_ffff;
        let smtp = self.pop3.is_none() && self.imap.is_none();
        let status = if smtp && cfg.mix.reject > 0 && rng.pct(cfg.mix.reject as u32) {
            *rng.pick(&[554u16, 550, 552])
        } else {
            250
        };
        let lf_only = smtp && stuffed && cfg.mix.lf_only > 0 && rng.pct(cfg.mix.lf_only as u32);
        let now = ctx.now_us;

        let l = &mut self.local;
        let mut segs: Vec<Seg> = Vec::with_capacity(8);
        let mut mark = l.len();
        let mark0 = mark;

        // Received: 1-3 hops, newest first.
        let hops = rng.range(1, 3);
        for h in 0..hops {
            let ts = now.saturating_sub((h + 1) * rng.range(200_000, 3_000_000));
            if h == 0 {
                let _ = write!(
                    l,
                    "Received: from ws{}.{} (ws{}.{} [10.{}.{}.{}])\r\n\tby {} (Postfix) with ESMTPSA id ",
                    h,
                    rng.pick(DOMAINS),
                    h,
                    rng.pick(DOMAINS),
                    rng.below(256),
                    rng.below(256),
                    rng.range(1, 254),
                    self.helo
                );
                hex_into(l, rng.next_u64(), 10, true);
                l.extend_from_slice(b";\r\n\t");
            } else {
                let _ = write!(
                    l,
                    "Received: from [192.168.{}.{}] (unknown [192.168.{}.{}])\r\n\tby relay{}.{} with ESMTP id ",
                    h,
                    h + 10,
                    h,
                    h + 10,
                    h,
                    rng.pick(DOMAINS)
                );
                hex_into(l, rng.next_u64(), 12, false);
                let _ = write!(l, "\r\n\tfor <{}>; ", rcpts[0]);
            }
            rfc5322_date(l, ts);
            l.extend_from_slice(b"\r\n");
        }
        l.extend_from_slice(b"Date: ");
        rfc5322_date(l, now.saturating_sub(hops * 4_000_000));
        l.extend_from_slice(b"\r\n");
        if mailfrom == self.sender && rng.pct(70) {
            let _ = write!(l, "From: \"{}\" <{}>\r\n", self.sender_name, mailfrom);
        } else {
            let _ = write!(l, "From: {mailfrom}\r\n");
        }
        l.extend_from_slice(b"To: ");
        let mut first = true;
        for (i, r) in rcpts.iter().enumerate() {
            if rejected == Some(i) {
                continue;
            }
            if !first {
                l.extend_from_slice(if i % 3 == 0 { b",\r\n\t" } else { b", " });
            }
            first = false;
            if rng.pct(40) {
                let _ = write!(l, "{} <{r}>", display_name(r));
            } else {
                l.extend_from_slice(r.as_bytes());
            }
        }
        l.extend_from_slice(b"\r\n");
        if rng.pct(30) {
            let _ = write!(l, "Cc: {}", address(rng));
            if rng.pct(40) {
                let _ = write!(l, ", \"{}\" <{}>", display_name(&mailfrom), address(rng));
            }
            l.extend_from_slice(b"\r\n");
        }
        // Subject: plain, folded, or RFC 2047 encoded words (UTF-8 B and Q,
        // ISO-8859-1 Q, two adjacent encoded words on folded lines).
        let mut subject = String::new();
        let prefix = match rng.below(10) {
            0 => "Re: ",
            1 => "Fwd: ",
            _ => "",
        };
        subject.push_str(prefix);
        let mut decoded = String::from(prefix);
        let kind = rng.below(100);
        let words = |n: u64, rng: &mut Rng| {
            let mut s = String::new();
            for i in 0..n {
                if i > 0 {
                    s.push(' ');
                }
                let w: &str = rng.pick::<&str>(WORDS);
                s.push_str(w);
            }
            s
        };
        l.extend_from_slice(b"Subject: ");
        if kind < 10 {
            let raw = *rng.pick(SUBJECTS_UTF8);
            let mut enc = b"=?UTF-8?B?".to_vec();
            base64_into(&mut enc, raw.as_bytes());
            enc.extend_from_slice(b"?=");
            subject.push_str(std::str::from_utf8(&enc).expect("ascii"));
            decoded.push_str(raw);
            l.extend_from_slice(subject.as_bytes());
        } else if kind < 15 {
            let n = rng.below(100);
            subject.push_str(&format!("=?UTF-8?Q?Caf=C3=A9_r=C3=A9union_{n}?="));
            decoded.push_str(&format!("Café réunion {n}"));
            l.extend_from_slice(subject.as_bytes());
        } else if kind < 19 {
            let (enc, dec) = *rng.pick(SUBJECTS_LATIN1);
            subject.push_str(enc);
            decoded.push_str(dec);
            l.extend_from_slice(subject.as_bytes());
        } else if kind < 23 {
            // two encoded words, the second on a continuation line: the
            // folding whitespace between them is not part of the text
            let raw = *rng.pick(SUBJECTS_UTF8);
            let cut = raw
                .char_indices()
                .map(|(i, _)| i)
                .find(|&i| i >= raw.len() / 2)
                .unwrap_or(0);
            let (a, b) = raw.split_at(cut);
            let mut e1 = b"=?UTF-8?B?".to_vec();
            base64_into(&mut e1, a.as_bytes());
            e1.extend_from_slice(b"?=");
            let mut e2 = b"=?UTF-8?B?".to_vec();
            base64_into(&mut e2, b.as_bytes());
            e2.extend_from_slice(b"?=");
            l.extend_from_slice(subject.as_bytes());
            l.extend_from_slice(&e1);
            l.extend_from_slice(b"\r\n ");
            l.extend_from_slice(&e2);
            subject.push_str(std::str::from_utf8(&e1).expect("ascii"));
            subject.push(' ');
            subject.push_str(std::str::from_utf8(&e2).expect("ascii"));
            decoded.push_str(raw);
        } else if kind < 35 {
            let a = words(rng.range(4, 8), rng);
            let b = words(rng.range(3, 8), rng);
            subject.push_str(&a);
            l.extend_from_slice(subject.as_bytes());
            l.extend_from_slice(b"\r\n ");
            l.extend_from_slice(b.as_bytes());
            subject.push(' ');
            subject.push_str(&b);
            decoded.push_str(&a);
            decoded.push(' ');
            decoded.push_str(&b);
        } else {
            let a = words(rng.range(1, 7), rng);
            subject.push_str(&a);
            decoded.push_str(&a);
            l.extend_from_slice(subject.as_bytes());
        }
        l.extend_from_slice(b"\r\nMessage-ID: <");
        hex_into(l, rng.next_u64(), 16, false);
        l.push(b'.');
        hex_into(l, rng.next_u64(), 8, false);
        let _ = write!(
            l,
            "@{}>\r\n",
            mailfrom.rsplit('@').next().unwrap_or("example.com")
        );
        let (h, v) = *rng.pick(MAILERS);
        let _ = write!(l, "{h}: {v}\r\nMIME-Version: 1.0\r\n");

        // flush local bytes written since `mark` as one segment
        macro_rules! flush {
            () => {
                if l.len() > mark {
                    segs.push(Seg {
                        src: SRC_LOCAL,
                        start: mark as u32,
                        end: l.len() as u32,
                    });
                    if want_truth {
                        truth.extend_from_slice(&l[mark..]);
                    }
                    mark = l.len();
                }
            };
        }
        let add_text = |segs: &mut Vec<Seg>, truth: &mut Vec<u8>, rng: &mut Rng, want: usize| {
            pick_lines(&pools.text.lines, rng, want, |a, b| {
                let (ra, rb) = (pools.text.lines[a], pools.text.lines[b]);
                if stuffed {
                    let (sa, sb) = (pools.text_stuffed.lines[a], pools.text_stuffed.lines[b]);
                    segs.push(Seg {
                        src: SRC_TEXT_STUFFED,
                        start: sa,
                        end: sb,
                    });
                } else {
                    segs.push(Seg {
                        src: SRC_TEXT,
                        start: ra,
                        end: rb,
                    });
                }
                if want_truth {
                    truth.extend_from_slice(&pools.text.bytes[ra as usize..rb as usize]);
                }
            });
        };
        let add_pool =
            |segs: &mut Vec<Seg>, truth: &mut Vec<u8>, rng: &mut Rng, src: u8, want: usize| {
                let pool = if src == SRC_B64 {
                    &pools.b64
                } else {
                    &pools.qp
                };
                pick_lines(&pool.lines, rng, want, |a, b| {
                    let (ra, rb) = (pool.lines[a], pool.lines[b]);
                    segs.push(Seg {
                        src,
                        start: ra,
                        end: rb,
                    });
                    if want_truth {
                        truth.extend_from_slice(&pool.bytes[ra as usize..rb as usize]);
                    }
                });
            };

        let hdr_end;
        if !attach {
            l.extend_from_slice(b"Content-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            hdr_end = (l.len() - mark0) as u64;
            flush!();
            if lf_only {
                // a CRLF part, a run of LF-only lines, a CRLF line
                let first = (body_len / 2).max(1);
                add_text(&mut segs, truth, rng, first);
                pick_lines(&pools.text_lf.lines, rng, body_len - first + 1, |a, b| {
                    let (ra, rb) = (pools.text_lf.lines[a], pools.text_lf.lines[b]);
                    segs.push(Seg {
                        src: SRC_TEXT_LF,
                        start: ra,
                        end: rb,
                    });
                    if want_truth {
                        truth.extend_from_slice(&pools.text_lf.bytes[ra as usize..rb as usize]);
                    }
                });
                l.extend_from_slice(b"(the lines above end in a bare LF)\r\n");
            } else {
                add_text(&mut segs, truth, rng, body_len);
            }
        } else {
            let mut boundary = b"----=_Part_".to_vec();
            let _ = write!(boundary, "{}_", rng.below(100_000));
            hex_into(&mut boundary, rng.next_u64(), 12, false);
            let bnd = std::str::from_utf8(&boundary).expect("ascii").to_owned();
            let _ = write!(
                l,
                "Content-Type: multipart/mixed;\r\n\tboundary=\"{bnd}\"\r\n\r\n"
            );
            hdr_end = (l.len() - mark0) as u64;
            let _ = write!(
                l,
                "This is a multi-part message in MIME format.\r\n\r\n--{bnd}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            );
            flush!();
            let text_len = (body_len / 6).max(64).min(cfg.shape.text_part_max);
            add_text(&mut segs, truth, rng, text_len);
            let mut rest = body_len.saturating_sub(text_len);
            if rng.pct(50) {
                let _ = write!(
                    l,
                    "\r\n--{bnd}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                );
                flush!();
                let qp_len = (body_len / 6).max(64).min(cfg.shape.text_part_max);
                add_pool(&mut segs, truth, rng, SRC_QP, qp_len);
                rest = rest.saturating_sub(qp_len);
                // end the QP part with a hard line break
                l.extend_from_slice(b"end of quoted-printable part\r\n");
            }
            if rng.pct(25) {
                // a text file attached as quoted-printable
                let fname = format!("notes-{}.txt", rng.below(1000));
                let _ = write!(
                    l,
                    "\r\n--{bnd}\r\nContent-Type: text/plain; charset=utf-8; name=\"{fname}\"\r\nContent-Disposition: attachment; filename=\"{fname}\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                );
                flush!();
                add_pool(&mut segs, truth, rng, SRC_QP, rest.max(78));
                let _ = write!(l, "end of the attached notes\r\n\r\n--{bnd}--\r\n");
            } else {
                let (ctype, ext) = *rng.pick(&[
                    ("application/pdf", "pdf"),
                    ("application/zip", "zip"),
                    ("image/png", "png"),
                    ("application/octet-stream", "bin"),
                ]);
                let fname = format!(
                    "{}-{}.{ext}",
                    rng.pick(WORDS)
                        .trim_matches(|c: char| !c.is_ascii_alphanumeric()),
                    rng.below(1000)
                );
                let _ = write!(
                l,
                "\r\n--{bnd}\r\nContent-Type: {ctype}; name=\"{fname}\"\r\nContent-Disposition: attachment; filename=\"{fname}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            );
                flush!();
                add_pool(&mut segs, truth, rng, SRC_B64, rest.max(78));
                // a final short line with padding
                let mut tail = [0u8; 5];
                for b in tail.iter_mut() {
                    *b = rng.next_u64() as u8;
                }
                let n = rng.range(1, 5) as usize;
                base64_into(l, &tail[..n]);
                let _ = write!(l, "\r\n\r\n--{bnd}--\r\n");
            }
        }
        flush!();
        debug_assert_eq!(mark, l.len());

        let len: u64 = if want_truth {
            truth.len() as u64
        } else {
            msg_len(&segs, pools)
        };
        let mut chunks = vec![0u64];
        let mut zero_last = false;
        if !stuffed {
            let n = if len < 2048 { 1 } else { rng.range(2, 4) };
            for c in 1..n {
                let centre = len * c / n;
                let jitter = len / (4 * n);
                let b = rng.range(centre - jitter, centre + jitter);
                chunks.push(b);
            }
            chunks.push(len);
            zero_last = rng.pct(10);
        }
        let plain_body = !attach && segs.len() > 1;
        Msg {
            segs,
            len,
            mailfrom,
            rcpts,
            rejected,
            step: 0,
            chunks,
            zero_last,
            qid,
            status,
            subject,
            subject_decoded: decoded,
            hdr_end,
            plain_body,
            fate: Fate::Data,
        }
    }
}

/// A message body size drawn as `cfg.shape.body_sizes` says.
pub(super) fn body_size(rng: &mut Rng, cfg: &GenConfig) -> usize {
    let (lo, hi) = (cfg.body_bytes.0 as u64, cfg.body_bytes.1 as u64);
    match cfg.shape.body_sizes {
        BodySizes::Uniform => rng.range(lo, hi) as usize,
        BodySizes::LogNormal {
            median,
            sigma_milli,
        } => crate::rng::lognormal(rng, median, sigma_milli).clamp(lo, hi) as usize,
    }
}

/// Unstuffed message length (stuffed text segments are mapped back by line).
pub(super) fn msg_len(segs: &[Seg], pools: &Pools) -> u64 {
    let mut n = 0u64;
    for s in segs {
        if s.src == SRC_TEXT_STUFFED {
            let lines = &pools.text_stuffed.lines;
            let a = lines.partition_point(|&x| x < s.start);
            let b = lines.partition_point(|&x| x < s.end);
            n += (pools.text.lines[b] - pools.text.lines[a]) as u64;
        } else {
            n += s.len() as u64;
        }
    }
    n
}
