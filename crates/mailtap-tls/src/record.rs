//! TLS/SSLv2 record framing of one direction: cuts the reassembled byte
//! stream into records across arbitrary delivery boundaries. Only record
//! bodies that are parsed (handshake, alert, CCS, heartbeat, SSLv2) are
//! buffered, so memory per direction is bounded by one record (64 KiB);
//! application data and ciphertext bodies are skipped as they stream by.

/// The 5 header bytes Zeek reads of every record (for SSLv2 these are the
/// 2-byte length, the message type and two bytes of the message).
pub type Header = [u8; 5];

/// What the analyzer decided about a record once its header was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Body of `len` bytes, buffered when `keep`.
    Body { len: usize, keep: bool },
    /// Not TLS: stop reading this direction.
    Stop,
}

/// An event of the framer for the analyzer.
pub enum Step<'a> {
    /// A complete header: decide how to frame the body.
    Header(Header),
    /// A complete record (body empty when it was not kept).
    Record(Header, &'a [u8], usize),
}

#[derive(Default)]
pub struct RecordReader {
    hdr: Header,
    hdr_len: usize,
    /// Body bytes still to come for the current record.
    need: usize,
    keep: bool,
    body_len: usize,
    body: Vec<u8>,
    in_body: bool,
    pub stopped: bool,
}

impl RecordReader {
    /// Feeds `data`, calling `on` for each header (which returns the
    /// framing) and each complete record.
    pub fn feed(&mut self, mut data: &[u8], on: &mut dyn FnMut(Step<'_>) -> Option<Framing>) {
        while !data.is_empty() && !self.stopped {
            if !self.in_body {
                let n = (5 - self.hdr_len).min(data.len());
                self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&data[..n]);
                self.hdr_len += n;
                data = &data[n..];
                if self.hdr_len < 5 {
                    return;
                }
                match on(Step::Header(self.hdr)) {
                    Some(Framing::Body { len, keep }) => {
                        self.in_body = true;
                        self.need = len;
                        self.body_len = len;
                        self.keep = keep;
                        self.body.clear();
                    }
                    _ => {
                        self.stopped = true;
                        self.body = Vec::new();
                        return;
                    }
                }
            }
            let n = self.need.min(data.len());
            if self.keep {
                self.body.extend_from_slice(&data[..n]);
            }
            self.need -= n;
            data = &data[n..];
            if self.need == 0 {
                self.in_body = false;
                self.hdr_len = 0;
                let hdr = self.hdr;
                let body = std::mem::take(&mut self.body);
                if on(Step::Record(hdr, &body, self.body_len)).is_none() {
                    self.stopped = true;
                }
                self.body = body;
                self.body.clear();
                // Give back memory of a large record once the handshake
                // phase is over (the next record decides what it needs).
                if self.body.capacity() > 32 * 1024 {
                    self.body = Vec::new();
                }
            }
        }
    }

    /// Drops all buffered state (after the analyzer stopped).
    pub fn release(&mut self) {
        self.stopped = true;
        self.body = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(stream: &[u8], cuts: &[usize]) -> Vec<(u8, Vec<u8>)> {
        let mut r = RecordReader::default();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut pieces: Vec<&[u8]> = Vec::new();
        for &c in cuts {
            pieces.push(&stream[pos..c]);
            pos = c;
        }
        pieces.push(&stream[pos..]);
        for p in pieces {
            r.feed(p, &mut |s| match s {
                Step::Header(h) => Some(Framing::Body {
                    len: usize::from(u16::from_be_bytes([h[3], h[4]])),
                    keep: h[0] != 23,
                }),
                Step::Record(h, b, _) => {
                    out.push((h[0], b.to_vec()));
                    Some(Framing::Stop)
                }
            });
        }
        out
    }

    #[test]
    fn split_anywhere() {
        let mut s = vec![22, 3, 3, 0, 3, 1, 2, 3];
        s.extend_from_slice(&[23, 3, 3, 0, 2, 9, 9]);
        s.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        let whole = records(&s, &[]);
        assert_eq!(
            whole,
            vec![(22, vec![1, 2, 3]), (23, vec![]), (21, vec![2, 40])]
        );
        for a in 0..s.len() {
            for b in a..s.len() {
                assert_eq!(records(&s, &[a, b]), whole, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn stop_on_bad_header() {
        let mut r = RecordReader::default();
        let mut n = 0;
        r.feed(b"GET / HTTP/1.1\r\n", &mut |_| {
            n += 1;
            Some(Framing::Stop)
        });
        assert!(r.stopped);
        assert_eq!(n, 1);
    }
}
