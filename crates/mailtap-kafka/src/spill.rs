//! The disk queue that holds records while Kafka cannot take them.
//!
//! A directory of append-only segment files `<20-digit n>.seg`, consumed
//! from the head. Each record is
//! `len: u32 LE | crc32(payload): u32 LE | payload` with
//! `payload = topic_len: u16 LE | topic | key_len: u32 LE (u32::MAX = no key) | key | value`.
//! The committed read position (the head) is kept in the file `head`
//! (`<segment> <offset>`, replaced atomically), so a later run resumes where
//! this one stopped. Opening validates every record from the head on: the
//! first record whose length or checksum does not check out (a write torn by
//! a crash or a full disk) ends its segment, which is truncated there and
//! counted in [`OpenReport::torn_bytes`]; the valid records before it stay.
//!
//! Everything is bounded by `max_bytes` (records between head and tail);
//! [`Spill::append`] refuses a record that does not fit.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A position in the spill: segment number and byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    pub seg: u64,
    pub off: u64,
}

/// One spilled record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpillRec {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// What [`Spill::open`] found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OpenReport {
    /// Valid records waiting from an earlier run.
    pub records: u64,
    /// Bytes cut off torn or corrupt segment tails.
    pub torn_bytes: u64,
}

const HEADER: u64 = 8;
/// Larger than any record we write (a capped email is a few MiB); a length
/// beyond it can only be garbage.
const MAX_RECORD: u64 = 256 << 20;

pub(crate) struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    seg_max: u64,
    /// Live segments, oldest first, with their lengths.
    segs: VecDeque<(u64, u64)>,
    /// Next segment number when a new one is started.
    next_seg: u64,
    head: Pos,
    cursor: Pos,
    writer: Option<File>,
    reader: Option<(Pos, BufReader<File>)>,
    records: u64,
    head_dirty: bool,
}

fn seg_name(n: u64) -> String {
    format!("{n:020}.seg")
}

fn crc(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

impl Spill {
    /// Opens (creating) the spill directory, validates what is there and
    /// truncates torn tails.
    pub fn open(dir: &Path, max_bytes: u64, seg_max: u64) -> io::Result<(Spill, OpenReport)> {
        std::fs::create_dir_all(dir)?;
        let mut nums = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                nums.push(n);
            }
        }
        nums.sort_unstable();
        let mut head = read_head(dir).unwrap_or(Pos { seg: 0, off: 0 });
        // Segments before the head were consumed (a crash between moving
        // the head and deleting them): delete them now.
        let mut report = OpenReport::default();
        let mut segs = VecDeque::new();
        for &n in &nums {
            let path = dir.join(seg_name(n));
            if n < head.seg {
                std::fs::remove_file(&path)?;
                continue;
            }
            let start = if n == head.seg { head.off } else { 0 };
            let (valid_end, count, file_len) = scan(&path, start)?;
            if valid_end < file_len {
                tracing::error!(
                    segment = %path.display(),
                    valid_bytes = valid_end,
                    torn_bytes = file_len - valid_end,
                    "kafka spill: torn or corrupt record; the rest of this segment is discarded"
                );
                report.torn_bytes += file_len - valid_end;
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(valid_end)?;
            }
            report.records += count;
            segs.push_back((n, valid_end));
        }
        match segs.front() {
            Some(&(n, len)) if n == head.seg => head.off = head.off.min(len),
            Some(&(n, _)) => head = Pos { seg: n, off: 0 },
            None => {
                head = Pos {
                    seg: head.seg,
                    off: 0,
                }
            }
        }
        let next_seg = nums.last().map_or(head.seg, |&n| n + 1).max(head.seg + 1);
        let spill = Spill {
            dir: dir.to_path_buf(),
            max_bytes,
            seg_max: seg_max.max(HEADER + 1),
            segs,
            next_seg,
            head,
            cursor: head,
            writer: None,
            reader: None,
            records: report.records,
            head_dirty: false,
        };
        Ok((spill, report))
    }

    /// Records between head and tail.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes between head and tail (what counts against `max_bytes`).
    pub fn bytes(&self) -> u64 {
        let total: u64 = self.segs.iter().map(|&(_, len)| len).sum();
        match self.segs.front() {
            Some(&(n, _)) if n == self.head.seg => total - self.head.off,
            _ => total,
        }
    }

    /// Appends a record. `Ok(false)`: it does not fit under `max_bytes` and
    /// was not written.
    pub fn append(&mut self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> io::Result<bool> {
        let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
        let klen = key.map_or(0, <[u8]>::len);
        let plen = 2 + topic.len() + 4 + klen + value.len();
        let size = HEADER + plen as u64;
        if size > MAX_RECORD || self.bytes() + size > self.max_bytes {
            return Ok(false);
        }
        let mut buf = Vec::with_capacity(size as usize);
        buf.extend_from_slice(&(plen as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        buf.extend_from_slice(topic);
        buf.extend_from_slice(&key.map_or(u32::MAX, |k| k.len() as u32).to_le_bytes());
        if let Some(k) = key {
            buf.extend_from_slice(k);
        }
        buf.extend_from_slice(value);
        let c = crc(&buf[8..]);
        buf[4..8].copy_from_slice(&c.to_le_bytes());

        let roll = match self.segs.back() {
            None => true,
            Some(&(_, len)) => len >= self.seg_max,
        };
        if roll {
            let n = self.next_seg;
            self.next_seg += 1;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(seg_name(n)))?;
            if self.segs.is_empty() {
                self.head = Pos { seg: n, off: 0 };
                self.cursor = self.head;
                self.head_dirty = true;
            }
            self.segs.push_back((n, 0));
            self.writer = Some(f);
        }
        if self.writer.is_none() {
            // Reopened spill: continue the last segment.
            let &(n, _) = self.segs.back().expect("a segment exists");
            self.writer = Some(
                OpenOptions::new()
                    .append(true)
                    .open(self.dir.join(seg_name(n)))?,
            );
        }
        let w = self.writer.as_mut().expect("writer open");
        // One write per record (unbuffered): the reader, in the same thread,
        // then always sees whole records, and a crash tears at most the last.
        if let Err(e) = w.write_all(&buf) {
            // Cut back what may have been written so the file stays valid.
            let len = self.segs.back().map_or(0, |&(_, l)| l);
            let _ = w.set_len(len);
            return Err(e);
        }
        if let Some(last) = self.segs.back_mut() {
            last.1 += size;
        }
        self.records += 1;
        Ok(true)
    }

    /// Moves the read cursor (back) to `p`, a position a read started at.
    pub fn set_cursor(&mut self, p: Pos) {
        self.cursor = p;
    }

    /// Moves the read cursor back to the head.
    pub fn rewind(&mut self) {
        self.cursor = self.head;
    }

    pub fn head(&self) -> Pos {
        self.head
    }

    /// Reads the record at the cursor: `(from, end, record)` where `from`
    /// is the cursor before the read (pass it to [`Spill::set_cursor`] to
    /// read it again) and `end` the cursor after it.
    pub fn read_next(&mut self) -> io::Result<Option<(Pos, Pos, SpillRec)>> {
        let from = self.cursor;
        let mut at = self.cursor;
        loop {
            let Some(idx) = self.segs.iter().position(|&(n, _)| n >= at.seg) else {
                return Ok(None);
            };
            let (n, len) = self.segs[idx];
            if n > at.seg {
                at = Pos { seg: n, off: 0 };
            }
            if at.off < len {
                break;
            }
            if idx + 1 == self.segs.len() {
                return Ok(None);
            }
            at = Pos {
                seg: self.segs[idx + 1].0,
                off: 0,
            };
        }
        let reader = match &mut self.reader {
            Some((p, r)) if *p == at => r,
            _ => {
                let mut f = File::open(self.dir.join(seg_name(at.seg)))?;
                f.seek(SeekFrom::Start(at.off))?;
                &mut self
                    .reader
                    .insert((at, BufReader::with_capacity(64 << 10, f)))
                    .1
            }
        };
        let mut hdr = [0u8; 8];
        reader.read_exact(&mut hdr)?;
        let plen = u32::from_le_bytes(hdr[..4].try_into().expect("4 bytes")) as usize;
        let want = u32::from_le_bytes(hdr[4..].try_into().expect("4 bytes"));
        let mut payload = vec![0u8; plen];
        reader.read_exact(&mut payload)?;
        let end = Pos {
            seg: at.seg,
            off: at.off + HEADER + plen as u64,
        };
        if let Some((p, _)) = &mut self.reader {
            *p = end;
        }
        self.cursor = end;
        // Validated at open and written whole by us since: a mismatch here
        // means the file changed under us.
        let rec = (crc(&payload) == want)
            .then(|| decode(&payload))
            .flatten()
            .ok_or_else(|| {
                self.reader = None;
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "kafka spill: record checksum mismatch",
                )
            })?;
        Ok(Some((from, end, rec)))
    }

    /// Marks everything before `end` (the end of a record read) as consumed.
    pub fn commit(&mut self, end: Pos) {
        if end <= self.head {
            return;
        }
        self.head = end;
        self.records = self.records.saturating_sub(1);
        self.head_dirty = true;
        // Delete segments wholly before the head.
        while let Some(&(n, _)) = self.segs.front() {
            if n < self.head.seg {
                let _ = std::fs::remove_file(self.dir.join(seg_name(n)));
                self.segs.pop_front();
            } else {
                break;
            }
        }
        if self.records == 0 {
            // Drained: start afresh so the directory does not keep a
            // consumed segment around.
            for (n, _) in self.segs.drain(..) {
                let _ = std::fs::remove_file(self.dir.join(seg_name(n)));
            }
            self.writer = None;
            self.reader = None;
            self.head = Pos {
                seg: self.next_seg,
                off: 0,
            };
            self.cursor = self.head;
        }
    }

    /// Writes the head file if it moved.
    pub fn persist_head(&mut self) -> io::Result<()> {
        if !self.head_dirty {
            return Ok(());
        }
        let tmp = self.dir.join("head.tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.head.seg, self.head.off))?;
        std::fs::rename(&tmp, self.dir.join("head"))?;
        self.head_dirty = false;
        Ok(())
    }

    /// Head file and segments to stable storage (at shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        self.persist_head()?;
        if let Some(w) = &self.writer {
            w.sync_all()?;
        }
        File::open(&self.dir)?.sync_all()
    }
}

fn read_head(dir: &Path) -> Option<Pos> {
    let s = std::fs::read_to_string(dir.join("head")).ok()?;
    let mut it = s.split_whitespace();
    let seg = it.next()?.parse().ok()?;
    let off = it.next()?.parse().ok()?;
    Some(Pos { seg, off })
}

/// Validates a segment from `start`: `(end of the last valid record,
/// valid records, file length)`.
fn scan(path: &Path, start: u64) -> io::Result<(u64, u64, u64)> {
    let f = File::open(path)?;
    let file_len = f.metadata()?.len();
    if start >= file_len {
        return Ok((file_len.min(start), 0, file_len));
    }
    let mut r = BufReader::with_capacity(256 << 10, f);
    r.seek(SeekFrom::Start(start))?;
    let mut at = start;
    let mut count = 0;
    let mut payload = Vec::new();
    loop {
        if at + HEADER > file_len {
            break;
        }
        let mut hdr = [0u8; 8];
        r.read_exact(&mut hdr)?;
        let plen = u64::from(u32::from_le_bytes(hdr[..4].try_into().expect("4 bytes")));
        let want = u32::from_le_bytes(hdr[4..].try_into().expect("4 bytes"));
        if plen > MAX_RECORD || at + HEADER + plen > file_len {
            break;
        }
        payload.resize(plen as usize, 0);
        r.read_exact(&mut payload)?;
        if crc(&payload) != want || decode(&payload).is_none() {
            break;
        }
        at += HEADER + plen;
        count += 1;
    }
    Ok((at, count, file_len))
}

fn decode(p: &[u8]) -> Option<SpillRec> {
    let tlen = u16::from_le_bytes(p.get(..2)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(p.get(2..2 + tlen)?).ok()?.to_string();
    let mut at = 2 + tlen;
    let klen = u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let key = if klen == u32::MAX {
        None
    } else {
        let k = p.get(at..at + klen as usize)?.to_vec();
        at += klen as usize;
        Some(k)
    };
    Some(SpillRec {
        topic,
        key,
        value: p.get(at..)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(s: &mut Spill) -> Vec<SpillRec> {
        let mut v = Vec::new();
        while let Some((_, end, r)) = s.read_next().unwrap() {
            s.commit(end);
            v.push(r);
        }
        v
    }

    #[test]
    fn roundtrip_across_segments_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, rep) = Spill::open(d.path(), 1 << 20, 100).unwrap();
        assert_eq!(rep.records, 0);
        for i in 0..20u32 {
            let key = (i % 3 != 0).then(|| format!("k{i}").into_bytes());
            assert!(s.append("t", key.as_deref(), &i.to_le_bytes()).unwrap());
        }
        assert_eq!(s.records(), 20);
        assert!(s.segs.len() > 1, "small seg_max rolls segments");
        // Consume 5, persist, reopen: 15 remain, in order.
        for _ in 0..5 {
            let (_, end, _) = s.read_next().unwrap().unwrap();
            s.commit(end);
        }
        s.sync().unwrap();
        drop(s);
        let (mut s, rep) = Spill::open(d.path(), 1 << 20, 100).unwrap();
        assert_eq!(rep.records, 15);
        let got = read_all(&mut s);
        let vals: Vec<u32> = got
            .iter()
            .map(|r| u32::from_le_bytes(r.value[..].try_into().unwrap()))
            .collect();
        assert_eq!(vals, (5..20).collect::<Vec<_>>());
        assert_eq!(got[1].key, None); // i = 6
        assert_eq!(got[0].key.as_deref(), Some(&b"k5"[..]));
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        // Drained: no segment files are left.
        let segs = std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(segs, 0);
    }

    #[test]
    fn limit_refuses_records() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spill::open(d.path(), 100, 1 << 20).unwrap();
        assert!(s.append("t", None, &[0; 40]).unwrap());
        assert!(!s.append("t", None, &[0; 60]).unwrap());
        assert_eq!(s.records(), 1);
        assert!(s.bytes() <= 100);
    }

    #[test]
    fn rewind_reads_again() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spill::open(d.path(), 1 << 20, 1 << 20).unwrap();
        for i in 0..3u8 {
            s.append("t", None, &[i]).unwrap();
        }
        let (_, _, a) = s.read_next().unwrap().unwrap();
        let (from_b, _, _) = s.read_next().unwrap().unwrap();
        s.rewind();
        assert_eq!(s.read_next().unwrap().unwrap().2, a);
        s.set_cursor(from_b);
        assert_eq!(s.read_next().unwrap().unwrap().2.value, vec![1]);
    }
}
