//! The script layer of Zeek's SMTP support (`base/protocols/smtp/main.zeek`
//! and `entities.zeek`): when smtp.log records are created and written,
//! which request/reply/header fills which field, and mail-transaction
//! validation that can disable the analyzer.

use crate::config::{is_private_addr, SmtpConfig};
use crate::headers::{
    extract_email_addrs, extract_ip_addresses, received_address, remove_orcpt, split_mime_addresses,
};
use mailtap_core::{Bytes, ConnCtx, Record, SmtpRecord, Weird};

/// The record being filled (`c$smtp`) plus its unlogged fields.
#[derive(Debug)]
struct Current {
    rec: SmtpRecord,
    process_received_from: bool,
    has_client_activity: bool,
    process_smtp_headers: bool,
    entity_count: u64,
    /// `c$smtp$entity` is set (between entity begin and end).
    entity: bool,
}

/// Per-connection script state (`c$smtp_state`) and the current record.
#[derive(Debug, Default)]
pub struct Script {
    cur: Option<Current>,
    helo: Option<Bytes>,
    messages_transferred: u64,
    mail_from_seen: bool,
    rcpt_to_seen: bool,
    invalid_transactions: u64,
    bdat_last_observed: bool,
    /// Set by analyzer confirmation (`analyzer_id`); cleared once the
    /// analyzer was disabled.
    analyzer_id: bool,
    /// The script asked to disable the analyzer.
    pub disable_requested: bool,
    /// Records written so far.
    pub records_written: u64,
}

/// Zeek's `find_all` refuses strings longer than this.
fn capped<'a>(cfg: &SmtpConfig, s: &'a [u8]) -> &'a [u8] {
    if s.len() > cfg.max_find_all_string_length {
        &[]
    } else {
        s
    }
}

fn add_to_set(set: &mut Vec<Bytes>, v: Bytes) {
    if !set.contains(&v) {
        set.push(v);
    }
}

impl Script {
    fn new_record(&self, cx: &ConnCtx<'_>, cfg: &SmtpConfig) -> Current {
        let rec = SmtpRecord {
            ts: cx.ts,
            uid: cx.uid.to_owned(),
            id: Some(*cx.id),
            trans_depth: self.messages_transferred + 1,
            helo: self.helo.clone(),
            path: Some(vec![cx.id.resp_h, cx.id.orig_h]),
            is_webmail: cfg.log_is_webmail.then_some(false),
            ..SmtpRecord::default()
        };
        Current {
            rec,
            process_received_from: true,
            has_client_activity: false,
            process_smtp_headers: true,
            entity_count: 0,
            entity: false,
        }
    }

    /// `set_smtp_session`.
    fn session(&mut self, cx: &ConnCtx<'_>, cfg: &SmtpConfig) -> &mut Current {
        if self.cur.is_none() {
            self.cur = Some(self.new_record(cx, cfg));
        }
        // Just created above if it was missing.
        self.cur.as_mut().unwrap_or_else(|| unreachable!())
    }

    /// `smtp_message`: writes the record if it has client activity and
    /// starts a fresh one.
    fn flush(&mut self, cx: &mut ConnCtx<'_>, cfg: &SmtpConfig) {
        let active = self.cur.as_ref().is_some_and(|c| c.has_client_activity);
        if active {
            let fresh = self.new_record(cx, cfg);
            if let Some(old) = self.cur.replace(fresh) {
                self.records_written += 1;
                cx.emit(Record::Smtp(Box::new(old.rec)));
            }
        }
    }

    /// A connection picked up mid-stream synchronised at a transaction
    /// whose start was not seen: its envelope is taken as given (no
    /// `smtp_mail_transaction_invalid`) and its row is written.
    pub fn midstream(&mut self, cx: &ConnCtx<'_>, cfg: &SmtpConfig) {
        self.mail_from_seen = true;
        self.rcpt_to_seen = true;
        self.session(cx, cfg).has_client_activity = true;
    }

    /// `analyzer_confirmation_info`.
    pub fn on_confirm(&mut self, cx: &ConnCtx<'_>, cfg: &SmtpConfig) {
        self.session(cx, cfg);
        self.analyzer_id = true;
    }

    fn invalid_transaction(&mut self, cx: &mut ConnCtx<'_>, cfg: &SmtpConfig, addl: &str) {
        cx.weird(
            Weird::SmtpMailTransactionInvalid,
            Some(addl.as_bytes()),
            "SMTP",
        );
        self.invalid_transactions += 1;
        if cfg.max_invalid_mail_transactions > 0
            && self.invalid_transactions > cfg.max_invalid_mail_transactions
            && self.analyzer_id
        {
            let addl = format!(
                "{} > {}",
                self.invalid_transactions, cfg.max_invalid_mail_transactions
            );
            cx.limit_weird(
                Weird::SmtpExcessiveInvalidMailTransactions,
                Some(addl.as_bytes()),
                "SMTP",
            );
            self.disable_requested = true;
            self.analyzer_id = false;
        }
    }

    /// `smtp_request` handler.
    pub fn on_request(
        &mut self,
        cx: &mut ConnCtx<'_>,
        cfg: &SmtpConfig,
        command: &[u8],
        arg: &[u8],
    ) {
        self.session(cx, cfg);
        let starts_ci =
            |s: &[u8], p: &[u8]| s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p);
        if command.eq_ignore_ascii_case(b"HELO") || command.eq_ignore_ascii_case(b"EHLO") {
            self.helo = Some(arg.to_vec());
            self.session(cx, cfg).rec.helo = Some(arg.to_vec());
        } else if command.eq_ignore_ascii_case(b"RCPT") && starts_ci(arg, b"TO:") {
            let addrs = extract_email_addrs(capped(cfg, arg));
            let cur = self.session(cx, cfg);
            let set = cur.rec.rcptto.get_or_insert_with(Vec::new);
            let mut too_many = false;
            // find_all yields a set: duplicates within one argument count once.
            let mut raw: Vec<Bytes> = Vec::new();
            for a in addrs {
                add_to_set(&mut raw, a);
            }
            for a in raw {
                // Zeek checks the size before every add, even of a duplicate.
                if cfg.max_rcptto_addresses > 0 && set.len() as u64 >= cfg.max_rcptto_addresses {
                    too_many = true;
                    break;
                }
                add_to_set(set, remove_orcpt(&a));
            }
            cur.has_client_activity = true;
            if too_many {
                cx.weird_unsourced(Weird::SmtpTooManyRcpttoAddresses, None);
            }
            self.rcpt_to_seen = true;
            if cfg.mail_transaction_validation && !self.mail_from_seen {
                self.invalid_transaction(cx, cfg, "rcpt to missing mail from");
            }
        } else if command.eq_ignore_ascii_case(b"MAIL") && starts_ci(arg, b"FROM:") {
            self.flush(cx, cfg);
            let first = extract_email_addrs(capped(cfg, arg)).into_iter().next();
            let cur = self.session(cx, cfg);
            if let Some(a) = first.filter(|a| !a.is_empty()) {
                cur.rec.mailfrom = Some(a);
            }
            cur.has_client_activity = true;
            self.mail_from_seen = true;
            self.rcpt_to_seen = false;
        } else if command.eq_ignore_ascii_case(b"DATA") || command.eq_ignore_ascii_case(b"BDAT") {
            if cfg.mail_transaction_validation && !self.rcpt_to_seen {
                self.invalid_transaction(cx, cfg, "data missing rcpt to");
            }
            // The script's test is case-sensitive, unlike the analyzer's.
            if command.eq_ignore_ascii_case(b"BDAT") && arg.ends_with(b" LAST") {
                self.mail_from_seen = false;
                self.rcpt_to_seen = false;
                self.bdat_last_observed = true;
            }
        } else if command == b"." {
            self.mail_from_seen = false;
            self.rcpt_to_seen = false;
        }
    }

    /// `smtp_reply` handlers (priority 5 and -5).
    pub fn on_reply(
        &mut self,
        cx: &mut ConnCtx<'_>,
        cfg: &SmtpConfig,
        code: u16,
        cmd: &str,
        msg: &[u8],
        cont: bool,
    ) {
        let cur = self.session(cx, cfg);
        // Every reply replaces the last one: reuse its buffer (no
        // allocation per reply once it is large enough).
        let mut lr = cur.rec.last_reply.take().unwrap_or_default();
        lr.clear();
        push_decimal(&mut lr, code);
        lr.push(b' ');
        lr.extend_from_slice(msg);
        cur.rec.last_reply = Some(lr);
        if cmd == "." || (!cont && cmd == "BDAT" && self.bdat_last_observed) {
            self.messages_transferred += 1;
            self.bdat_last_observed = false;
            self.flush(cx, cfg);
            // Zeek makes a fresh record here too (possibly twice).
            self.cur = Some(self.new_record(cx, cfg));
        }
    }

    /// `file_over_new_connection`: a file of this connection's current
    /// message goes into `fuids` (not once TLS started).
    pub fn on_file(&mut self, fuid: &str) {
        if let Some(cur) = self.cur.as_mut() {
            if !cur.rec.tls {
                cur.rec.fuids.push(fuid.as_bytes().to_vec());
            }
        }
    }

    /// `c$smtp$trans_depth` of the current record (as it would be if one
    /// were created now).
    pub fn trans_depth(&self) -> u64 {
        self.cur
            .as_ref()
            .map_or(self.messages_transferred + 1, |c| c.rec.trans_depth)
    }

    /// The record being filled, if any.
    pub fn current(&self) -> Option<&SmtpRecord> {
        self.cur.as_ref().map(|c| &c.rec)
    }

    /// The last HELO/EHLO argument of the connection.
    pub fn helo(&self) -> Option<&Bytes> {
        self.helo.as_ref()
    }

    /// `smtp_starttls`.
    pub fn on_starttls(&mut self) {
        if let Some(cur) = self.cur.as_mut() {
            cur.rec.tls = true;
            cur.has_client_activity = true;
        }
    }

    /// `mime_begin_entity` for a message's top-level entity.
    pub fn on_begin_entity(&mut self) {
        if let Some(cur) = self.cur.as_mut() {
            cur.entity = true;
            cur.entity_count += 1;
            if cur.entity_count > 1 {
                cur.process_smtp_headers = false;
            }
        }
    }

    /// `mime_end_entity` for a message's top-level entity.
    pub fn on_end_entity(&mut self) {
        if let Some(cur) = self.cur.as_mut() {
            cur.entity = false;
        }
    }

    /// `mime_one_header` of the top-level entity (name upper-cased).
    pub fn on_header(&mut self, cx: &mut ConnCtx<'_>, cfg: &SmtpConfig, name: &[u8], value: &[u8]) {
        let Some(cur) = self.cur.as_mut() else { return };
        if !cur.entity {
            cx.weird(Weird::MissingSmtpEntity, None, "SMTP");
        }
        if !cur.process_smtp_headers {
            return;
        }
        let rec = &mut cur.rec;
        match name {
            b"MESSAGE-ID" => rec.msg_id = Some(value.to_vec()),
            b"RECEIVED" => {
                if let Some(prev) = rec.first_received.take() {
                    rec.second_received = Some(prev);
                }
                rec.first_received = Some(value.to_vec());
            }
            b"IN-REPLY-TO" => rec.in_reply_to = Some(value.to_vec()),
            b"SUBJECT" => rec.subject = Some(value.to_vec()),
            b"FROM" => rec.from = Some(value.to_vec()),
            b"REPLY-TO" => rec.reply_to = Some(value.to_vec()),
            b"DATE" => rec.date = Some(value.to_vec()),
            b"TO" | b"CC" => {
                let is_to = name == b"TO";
                let parts = split_mime_addresses(capped(cfg, value));
                let (set, max, weird) = if is_to {
                    (
                        rec.to.get_or_insert_with(Vec::new),
                        cfg.max_to_addresses,
                        Weird::SmtpTooManyToAddresses,
                    )
                } else {
                    (
                        rec.cc.get_or_insert_with(Vec::new),
                        cfg.max_cc_addresses,
                        Weird::SmtpTooManyCcAddresses,
                    )
                };
                let mut too_many = false;
                for p in parts {
                    if max > 0 && set.len() as u64 >= max {
                        too_many = true;
                        break;
                    }
                    add_to_set(set, p);
                }
                if too_many {
                    cx.weird_unsourced(weird, None);
                }
            }
            b"X-ORIGINATING-IP" => {
                if let Some(ip) = extract_ip_addresses(value, false).first() {
                    rec.x_originating_ip = Some(*ip);
                }
            }
            b"X-MAILER" | b"USER-AGENT" | b"X-USER-AGENT" => {
                rec.user_agent = Some(value.to_vec());
                if name == b"USER-AGENT" && rec.is_webmail.is_some() && is_webmail(value) {
                    rec.is_webmail = Some(true);
                }
            }
            _ => {}
        }
        // The Received path handler (priority 3).
        if name == b"RECEIVED" && cur.process_received_from {
            let Some(ip) = received_address(value) else {
                return;
            };
            if !cfg.path_capture_matches(ip) && !is_private_addr(ip) {
                cur.process_received_from = false;
            }
            let path = cur.rec.path.get_or_insert_with(Vec::new);
            if path.last() != Some(&ip) {
                if cfg.max_path_length > 0 && path.len() as u64 >= cfg.max_path_length {
                    cx.weird_unsourced(Weird::SmtpMaxPathLengthExceeded, None);
                    return;
                }
                path.push(ip);
            }
        }
    }

    /// Connection teardown (`finalize_smtp`).
    pub fn finish(&mut self, cx: &mut ConnCtx<'_>) {
        if let Some(cur) = self.cur.take() {
            if cur.has_client_activity {
                self.records_written += 1;
                cx.emit(Record::Smtp(Box::new(cur.rec)));
            }
        }
    }
}

/// `policy/protocols/smtp/software`'s webmail user agents.
fn is_webmail(ua: &[u8]) -> bool {
    let contains = |n: &[u8]| memchr::memmem::find(ua, n).is_some();
    ua.starts_with(b"iPlanet Messenger")
        || ua.starts_with(b"Sun Java(tm) System Messenger Express")
        || contains(b"(IMP)")
        || ua.starts_with(b"SquirrelMail")
        || ua.starts_with(b"NeoMail")
        || contains(b"ZimbraWebClient")
}

/// Appends `v` in decimal (what `v.to_string()` gives, without the
/// allocation).
fn push_decimal(out: &mut Vec<u8>, mut v: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod decimal_tests {
    #[test]
    fn push_decimal_writes_what_to_string_writes() {
        for v in [0u16, 7, 10, 99, 100, 250, 421, 554, 999, 1000, 65535] {
            let mut out = b"x".to_vec();
            super::push_decimal(&mut out, v);
            assert_eq!(out, format!("x{v}").as_bytes());
        }
    }
}
