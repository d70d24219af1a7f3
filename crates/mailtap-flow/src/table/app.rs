//! The application layer of a connection: the analyzer factory, dynamic
//! protocol detection over the first bytes, and the hand-over of each
//! reassembled chunk.

use super::*;

/// Result of dynamic protocol detection on the buffered first bytes.
pub enum Detect<A> {
    Attach(A),
    NeedMore,
    GiveUp,
}

/// Chooses the application analyzer of a connection.
pub trait AnalyzerFactory {
    type Analyzer: TcpAnalyzer;
    /// An analyzer for a connection by its ports; `None` to try detection.
    fn by_port(&self, id: &ConnId) -> Option<Self::Analyzer>;
    /// For a connection picked up mid-stream that [`Self::by_port`] left
    /// without an analyzer: one by the originator's port, when the flow was
    /// oriented with the server first (its port is not one of
    /// `likely_server_ports`, as POP3's 110 is not in Zeek's). The
    /// analyzer must see the roles swapped back. `None` (the default) to
    /// try detection.
    fn by_server_port(&self, id: &ConnId) -> Option<Self::Analyzer> {
        let _ = id;
        None
    }
    /// Detection over the first bytes of each side seen so far.
    fn detect(&self, id: &ConnId, orig: &[u8], resp: &[u8]) -> Detect<Self::Analyzer>;
}

pub(super) enum App<A> {
    /// Analysable, but no analyzer yet: it is chosen (by port, else by
    /// detection) at the first payload byte, so a half-open connection of
    /// a SYN flood costs no analyzer state.
    Pending {
        midstream: bool,
    },
    Detecting {
        buf: Vec<u8>,
        order: Vec<(bool, u32)>,
        /// The connection was picked up mid-stream: the analyzer, once
        /// detected, is told so before it sees any byte.
        midstream: bool,
    },
    Attached(A),
    Off,
}

/// Hands one chunk of one direction to the connection's application layer.
pub(super) fn to_app<F: AnalyzerFactory>(
    factory: &F,
    cfg: &FlowConfig,
    counters: &mut FlowCounters,
    app: &mut App<F::Analyzer>,
    cx: &mut ConnCtx<'_>,
    is_orig: bool,
    chunk: Chunk<'_>,
) {
    if let App::Pending { midstream } = *app {
        if matches!(chunk, Chunk::Eof) {
            // Nothing to analyse before the first payload byte (or gap).
            return;
        }
        let by_port = factory
            .by_port(cx.id)
            .or_else(|| midstream.then(|| factory.by_server_port(cx.id)).flatten());
        *app = match by_port {
            Some(mut a) => {
                counters.analyzers_by_port += 1;
                if midstream {
                    a.start_midstream();
                }
                App::Attached(a)
            }
            None => App::Detecting {
                buf: Vec::new(),
                order: Vec::new(),
                midstream,
            },
        };
    }
    match app {
        App::Off | App::Pending { .. } => {}
        App::Attached(a) => {
            if a.disabled() {
                return;
            }
            match chunk {
                Chunk::Data(d) => a.deliver(cx, is_orig, d),
                Chunk::Gap(n) => a.gap(cx, is_orig, n),
                Chunk::Eof => a.eof(cx, is_orig),
            }
        }
        App::Detecting {
            buf,
            order,
            midstream,
        } => {
            let data = match chunk {
                Chunk::Data(d) => d,
                // Detection only looks at the beginning of a stream.
                Chunk::Gap(_) => {
                    *app = App::Off;
                    return;
                }
                Chunk::Eof => return,
            };
            let room = cfg.dpd_buffer_size.saturating_sub(buf.len());
            let take = data.len().min(room);
            buf.extend_from_slice(&data[..take]);
            if take > 0 {
                order.push((is_orig, take as u32));
            }
            let (mut o, mut r) = (Vec::new(), Vec::new());
            let mut pos = 0usize;
            for &(io, n) in order.iter() {
                let part = &buf[pos..pos + n as usize];
                if io {
                    o.extend_from_slice(part);
                } else {
                    r.extend_from_slice(part);
                }
                pos += n as usize;
            }
            match factory.detect(cx.id, &o, &r) {
                Detect::Attach(mut a) => {
                    if *midstream {
                        a.start_midstream();
                    }
                    // Replay what was buffered, in arrival order, then the
                    // rest of this chunk.
                    let mut pos = 0usize;
                    for &(io, n) in order.iter() {
                        if a.disabled() {
                            break;
                        }
                        a.deliver(cx, io, &buf[pos..pos + n as usize]);
                        pos += n as usize;
                    }
                    if take < data.len() && !a.disabled() {
                        a.deliver(cx, is_orig, &data[take..]);
                    }
                    *app = App::Attached(a);
                }
                Detect::NeedMore if take == data.len() && buf.len() < cfg.dpd_buffer_size => {}
                _ => *app = App::Off,
            }
        }
    }
}
