//! Handshake messages: reassembled per direction across records (a
//! message may span records, a record may hold several), bounded by
//! `max_handshake_message`, parsed for what ssl.log, x509.log and JA4
//! need, with Zeek's event order (extensions, then the hello, then the
//! history letter).

use crate::cursor::Cursor;
use crate::ja4::{self, ClientHelloInfo, ServerHelloInfo};
use crate::names;
use crate::record::Header;
use crate::x509;
use crate::{di, State};
use mailtap_core::{ConnCtx, Record, Weird};

/// The random of a HelloRetryRequest (RFC 8446 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Handshake reassembly of one direction.
#[derive(Default)]
pub struct HsBuf {
    buf: Vec<u8>,
    /// Bytes of an oversized message still to skip.
    skip: usize,
    /// The skipped message's type, noted when its last byte has passed
    /// (Zeek adds a message's history letter once it has all of it).
    skip_type: Option<u8>,
}

/// Outcome of parsing one message.
enum Parsed {
    Ok,
    /// Zeek's parser would throw: protocol violation.
    Bad,
}

impl State {
    /// Handshake record body: append, then parse every complete message.
    pub(crate) fn handshake_data(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, mut data: &[u8]) {
        let d = di(is_orig);
        if self.hs[d].skip > 0 {
            let n = self.hs[d].skip.min(data.len());
            self.hs[d].skip -= n;
            data = &data[n..];
            if self.hs[d].skip == 0 {
                if let Some(t) = self.hs[d].skip_type.take() {
                    self.skipped_message(cx, is_orig, t);
                }
            }
        }
        let max = self.cfg.max_handshake_message;
        let mut buf = std::mem::take(&mut self.hs[d].buf);
        buf.extend_from_slice(data);
        let mut pos = 0;
        while !self.stopped && buf.len() - pos >= 4 {
            let len = usize::from(buf[pos + 1]) << 16
                | usize::from(buf[pos + 2]) << 8
                | usize::from(buf[pos + 3]);
            if len > max {
                // No weird: Zeek 8.2.2 reports none for such a message
                // (its parser takes any size), and weird.log stays Zeek's.
                // Zeek parses it whatever its size: it keeps its history
                // letter once the whole message has passed (its content,
                // e.g. a certificate chain, is lost).
                let t = buf[pos];
                let avail = buf.len() - pos - 4;
                if avail >= len {
                    self.skipped_message(cx, is_orig, t);
                    pos += 4 + len;
                    continue;
                }
                self.hs[d].skip = len - avail;
                self.hs[d].skip_type = Some(t);
                pos = buf.len();
                break;
            }
            if buf.len() - pos - 4 < len {
                break;
            }
            let t = buf[pos];
            let body = &buf[pos + 4..pos + 4 + len];
            if let Parsed::Bad = self.message(cx, is_orig, t, body) {
                self.violation(cx);
            }
            pos += 4 + len;
        }
        if self.stopped {
            return;
        }
        buf.drain(..pos);
        if buf.capacity() > 64 * 1024 && buf.len() < 16 * 1024 {
            buf.shrink_to(16 * 1024);
        }
        self.hs[d].buf = buf;
    }

    /// An oversized message of type `t` has passed whole.
    fn skipped_message(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, t: u8) {
        if let Some(letter) = skipped_letter(t) {
            if t == 16 && is_orig {
                self.sess.client_key_exchange_seen = true;
            }
            self.sess.add_history(cx, is_orig, letter);
        }
    }

    fn message(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, t: u8, body: &[u8]) -> Parsed {
        let letter = match t {
            0 => b'h',
            1 => return self.client_hello(cx, is_orig, body),
            2 => return self.server_hello(cx, is_orig, body),
            3 => b'v',
            4 => b't',
            5 => b'e',
            6 => b'j',
            8 => b'o',
            11 => {
                if self.certificate(cx, is_orig, body).is_none() {
                    return Parsed::Bad;
                }
                b'x'
            }
            12 => {
                if !is_orig && self.server_key_exchange(body).is_none() {
                    return Parsed::Bad;
                }
                b'k'
            }
            13 => b'r',
            14 => b'n',
            15 => b'y',
            16 => {
                if is_orig {
                    self.sess.client_key_exchange_seen = true;
                }
                b'g'
            }
            20 => b'f',
            21 => b'w',
            22 => {
                let mut c = Cursor::new(body);
                let (Some(_), Some(_)) = (c.u8(), c.u24()) else {
                    return Parsed::Bad;
                };
                if c.remaining() == 0 {
                    cx.weird_unsourced(Weird::SslZeroLengthStapledOcspMessage, None);
                }
                b'u'
            }
            23 => b'a',
            24 => b'p',
            254 => b'm',
            _ => return Parsed::Bad,
        };
        self.sess.add_history(cx, is_orig, letter);
        Parsed::Ok
    }

    /// Walks the extension block of a hello: Zeek reads one length field
    /// if present and then extensions up to the end of the message.
    fn extensions<'a>(c: &mut Cursor<'a>) -> Option<Vec<(u16, &'a [u8])>> {
        let mut out = Vec::new();
        if c.remaining() >= 2 {
            c.u16()?;
            while c.remaining() > 0 {
                let t = c.u16()?;
                let l = c.u16()?;
                out.push((t, c.take(usize::from(l))?));
            }
        }
        Some(out)
    }

    fn client_hello(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, body: &[u8]) -> Parsed {
        let Some((version, session_id, ciphers, exts)) = parse_client_hello(body) else {
            return Parsed::Bad;
        };
        let mut info = ClientHelloInfo {
            version,
            ciphers,
            ..Default::default()
        };
        for (t, data) in &exts {
            info.extensions.push(*t);
            match *t {
                0 => {
                    info.sni = true;
                    let Some(names) = sni_names(cx, data) else {
                        return Parsed::Bad;
                    };
                    if let Some(first) = names.first() {
                        self.sess.server_name = Some(first.clone());
                        if names.len() > 1 {
                            let all: Vec<String> = names
                                .iter()
                                .map(|n| String::from_utf8_lossy(n).into_owned())
                                .collect();
                            let addl = format!("[{}]", all.join(", "));
                            cx.weird_unsourced(Weird::SslManyServerNames, Some(addl.as_bytes()));
                        }
                    }
                }
                13 => {
                    let mut c = Cursor::new(data);
                    if let Some(l) = c.u16() {
                        if let Some(b) = c.take(usize::from(l)) {
                            info.sig_algs = b
                                .chunks_exact(2)
                                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                                .collect();
                        }
                    }
                }
                16 => info.alpn_first = alpn_names(data).and_then(|v| v.into_iter().next()),
                35 if !data.is_empty() => self.sess.client_ticket_empty_session_seen = true,
                41 => self.sess.client_psk_seen = true,
                43 => {
                    let mut c = Cursor::new(data);
                    if let Some(l) = c.u8() {
                        if let Some(b) = c.take(usize::from(l)) {
                            info.supported_versions = b
                                .chunks_exact(2)
                                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                                .collect();
                        }
                    }
                }
                _ => {}
            }
        }
        self.client_hello_event(cx, version, session_id);
        if self.stopped {
            return Parsed::Ok;
        }
        self.sess.ja4 = Some(ja4::ja4(&info).into_bytes());
        self.ja4_client = Some(info);
        self.sess.add_history(cx, is_orig, b'c');
        Parsed::Ok
    }

    /// Zeek's `proc_client_hello` and the script's `ssl_client_hello`.
    fn client_hello_event(&mut self, cx: &mut ConnCtx<'_>, version: u16, session_id: &[u8]) {
        if !names::version_ok(version) {
            self.violation(cx);
            return;
        }
        cx.confirm("ssl");
        self.sess.touch(cx.ts);
        if !session_id.is_empty() && session_id.iter().any(|&b| b != 0) {
            self.sess.session_id = Some(session_id.to_vec());
            self.sess.client_ticket_empty_session_seen = false;
        }
    }

    fn server_hello(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, body: &[u8]) -> Parsed {
        let mut c = Cursor::new(body);
        let Some(version) = c.u16() else {
            return Parsed::Bad;
        };
        self.negotiated = Some(version);
        let v13 = version == 0x0304 || version >> 8 == 0x7f;
        let Some(random) = c.take(32) else {
            return Parsed::Bad;
        };
        let mut session_id: &[u8] = &[];
        if !v13 {
            let Some(sl) = c.u8() else {
                return Parsed::Bad;
            };
            let Some(s) = c.take(usize::from(sl)) else {
                return Parsed::Bad;
            };
            session_id = s;
        }
        let Some(cipher) = c.u16() else {
            return Parsed::Bad;
        };
        if !v13 && c.u8().is_none() {
            return Parsed::Bad;
        }
        self.cipher = Some(cipher);
        let Some(exts) = Self::extensions(&mut c) else {
            return Parsed::Bad;
        };
        let mut info = ServerHelloInfo {
            version,
            cipher,
            ..Default::default()
        };
        for (t, data) in &exts {
            info.extensions.push(*t);
            match *t {
                16 => {
                    let protos = alpn_names(data);
                    if let Some(p) = protos.and_then(|v| v.into_iter().next()) {
                        info.alpn = Some(p.clone());
                        self.sess.next_protocol = Some(p);
                    }
                }
                41 if self.sess.client_psk_seen => self.sess.resumed = true,
                43 if data.len() == 2 => {
                    let v = u16::from_be_bytes([data[0], data[1]]);
                    info.supported_version = Some(v);
                    self.negotiated = Some(v);
                    self.sess.version_num = Some(v);
                    self.sess.version = Some(names::version_name(v));
                }
                // key_share: 51, or 40 before TLS 1.3 draft 23.
                40 | 51 if data.len() >= 2 => {
                    let g = u16::from_be_bytes([data[0], data[1]]);
                    self.sess.curve = Some(names::curve_name(g));
                }
                _ => {}
            }
        }
        // ssl_server_hello
        if !names::version_ok(version) {
            self.violation(cx);
            return Parsed::Ok;
        }
        cx.confirm("ssl");
        self.sess.touch(cx.ts);
        if self.sess.version_num.is_none() {
            self.sess.version_num = Some(version);
            self.sess.version = Some(names::version_name(version));
        }
        self.sess.cipher = Some(names::cipher_name(u32::from(cipher)));
        if random == HRR_RANDOM {
            self.sess.hrr_seen = true;
        }
        let vn = self.sess.version_num.unwrap_or(version);
        if self.sess.session_id.as_deref() == Some(session_id) && vn / 0xff != 0x7f && vn != 0x0304
        {
            self.sess.resumed = true;
        }
        self.sess.ja4s = Some(ja4::ja4s(&info).into_bytes());
        if self.sess.hrr_seen {
            self.sess.hrr_seen = false;
            self.sess.add_history(cx, is_orig, b'j');
        } else {
            self.sess.add_history(cx, is_orig, b's');
        }
        Parsed::Ok
    }

    /// ECDHE parameters: the named curve.
    fn server_key_exchange(&mut self, body: &[u8]) -> Option<()> {
        let cipher = self.cipher?;
        if !names::cipher_is_ecdhe(cipher) {
            return Some(());
        }
        let mut c = Cursor::new(body);
        if c.u8()? == 3 {
            let curve = c.u16()?;
            let pl = c.u8()?;
            c.take(usize::from(pl))?;
            self.sess.curve = Some(names::curve_name(curve));
        }
        Some(())
    }

    /// A Certificate message (TLS 1.2 and older; TLS 1.3 sends it
    /// encrypted).
    fn certificate(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, body: &[u8]) -> Option<()> {
        let mut c = Cursor::new(body);
        let len = c.u24()?;
        let mut list = Cursor::new(c.take(len)?);
        let mut certs = Vec::new();
        while list.remaining() > 0 {
            let l = list.u24()?;
            certs.push(list.take(l)?);
        }
        self.cert_chain(cx, is_orig, &certs);
        Some(())
    }

    /// Zeek's `proc_certificate`: every certificate goes to x509.log and
    /// to the chain's fingerprints.
    pub(crate) fn cert_chain(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, certs: &[&[u8]]) {
        if self.sess.cert_chain_fps.is_none() {
            self.sess.cert_chain_fps = Some(Vec::new());
            self.sess.client_cert_chain_fps = Some(Vec::new());
        }
        for (i, der) in certs.iter().enumerate() {
            let fp = x509::fingerprint(der);
            if let Some(rec) = x509::x509_record(der, cx.ts, i == 0, is_orig) {
                cx.emit(Record::X509(Box::new(rec)));
            }
            let chain = if is_orig {
                &mut self.sess.client_cert_chain_fps
            } else {
                &mut self.sess.cert_chain_fps
            };
            if let Some(ch) = chain {
                ch.push(fp);
            }
            if i == 0 && !is_orig {
                self.sess.leaf = Some(der.to_vec());
            }
        }
    }

    /// SSLv2 ClientHello (record body after the 5 header bytes, whose last
    /// two are the client's version).
    pub(crate) fn v2_client_hello(&mut self, cx: &mut ConnCtx<'_>, h: Header, body: &[u8]) {
        let _ = h;
        let mut c = Cursor::new(body);
        let parsed = (|| {
            let cl = c.u16()?;
            let sl = c.u16()?;
            let chl = c.u16()?;
            let ciphers = c.take(usize::from(cl))?;
            let sid = c.take(usize::from(sl))?;
            c.take(usize::from(chl))?;
            Some((ciphers, sid))
        })();
        let Some((ciphers, sid)) = parsed else {
            self.violation(cx);
            return;
        };
        self.client_hello_event(cx, 0x0002, sid);
        if self.stopped {
            return;
        }
        let info = ClientHelloInfo {
            version: 0x0002,
            ciphers: ciphers
                .chunks_exact(3)
                .filter(|c| c[0] == 0)
                .map(|c| u16::from_be_bytes([c[1], c[2]]))
                .collect(),
            ..Default::default()
        };
        self.sess.ja4 = Some(ja4::ja4(&info).into_bytes());
        // record version 0: the script adds the letter itself.
        self.sess.add_history(cx, true, b'c');
    }

    /// SSLv2 ServerHello: version, certificate, cipher kinds.
    pub(crate) fn v2_server_hello(&mut self, cx: &mut ConnCtx<'_>, _h: Header, body: &[u8]) {
        let mut c = Cursor::new(body);
        let parsed = (|| {
            let v = c.u16()?;
            let cert_len = c.u16()?;
            let ciph_len = c.u16()?;
            let conn_len = c.u16()?;
            let cert = c.take(usize::from(cert_len))?;
            let ciphers = c.take(usize::from(ciph_len))?;
            c.take(usize::from(conn_len))?;
            Some((v, cert, ciphers))
        })();
        let Some((v, cert, ciphers)) = parsed else {
            self.violation(cx);
            return;
        };
        if v != 0x0002 {
            self.violation(cx);
            return;
        }
        cx.confirm("ssl");
        self.sess.touch(cx.ts);
        self.negotiated = Some(v);
        if self.sess.version_num.is_none() {
            self.sess.version_num = Some(v);
            self.sess.version = Some(names::version_name(v));
        }
        if let Some(k) = ciphers.chunks_exact(3).next() {
            let kind = u32::from(k[0]) << 16 | u32::from(k[1]) << 8 | u32::from(k[2]);
            self.sess.cipher = Some(names::cipher_name(kind));
        }
        self.sess.add_history(cx, false, b's');
        if !cert.is_empty() {
            self.cert_chain(cx, false, &[cert]);
        }
    }
}

/// History letter of a message skipped for its size.
fn skipped_letter(t: u8) -> Option<u8> {
    Some(match t {
        0 => b'h',
        1 => b'c',
        2 => b's',
        3 => b'v',
        4 => b't',
        5 => b'e',
        6 => b'j',
        8 => b'o',
        11 => b'x',
        12 => b'k',
        13 => b'r',
        14 => b'n',
        15 => b'y',
        16 => b'g',
        20 => b'f',
        21 => b'w',
        22 => b'u',
        23 => b'a',
        24 => b'p',
        254 => b'm',
        _ => return None,
    })
}

type ClientHelloParts<'a> = (u16, &'a [u8], Vec<u16>, Vec<(u16, &'a [u8])>);

fn parse_client_hello(body: &[u8]) -> Option<ClientHelloParts<'_>> {
    let mut c = Cursor::new(body);
    let version = c.u16()?;
    c.take(32)?;
    let sl = c.u8()?;
    let sid = c.take(usize::from(sl))?;
    if version == 0xfeff || version == 0xfefd {
        let cl = c.u8()?;
        c.take(usize::from(cl))?;
    }
    let cl = c.u16()?;
    let cs = c.take(usize::from(cl))?;
    let ml = c.u8()?;
    c.take(usize::from(ml))?;
    let exts = State::extensions(&mut c)?;
    let ciphers = cs
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    Some((version, sid, ciphers, exts))
}

/// Host names of a server_name extension (name type 0 only; others are a
/// weird). None when malformed.
fn sni_names(cx: &mut ConnCtx<'_>, data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if data.is_empty() {
        return Some(out);
    }
    let mut c = Cursor::new(data);
    let l = c.u16()?;
    let mut list = Cursor::new(c.take(usize::from(l))?);
    while list.remaining() > 0 {
        let t = list.u8()?;
        let nl = list.u16()?;
        let name = list.take(usize::from(nl))?;
        if t != 0 {
            cx.weird(
                Weird::SslExtUnknownServerNameType,
                Some(t.to_string().as_bytes()),
                "SSL",
            );
            continue;
        }
        out.push(name.to_vec());
    }
    Some(out)
}

/// Protocol names of an ALPN extension.
fn alpn_names(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut c = Cursor::new(data);
    let l = c.u16()?;
    let mut list = Cursor::new(c.take(usize::from(l))?);
    let mut out = Vec::new();
    while list.remaining() > 0 {
        let n = list.u8()?;
        out.push(list.take(usize::from(n))?.to_vec());
    }
    Some(out)
}
