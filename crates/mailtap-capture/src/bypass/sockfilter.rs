//! The eBPF socket filter that gives AF_PACKET rings the same bypass.

use super::*;

/// The socket filter, built by `bpf/build.sh` and committed with its
/// source.
static SOCKFILTER_OBJECT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bpf/mailtap_sockfilter.o"
));

/// The eBPF socket filter for AF_PACKET rings (`bpf/mailtap_sockfilter.c`),
/// loaded once and attached to any number of rings
/// ([`PacketRing::attach_bypass`](crate::afpacket::PacketRing::attach_bypass)),
/// all sharing its bypass map and counters. It returns the snap length
/// it was loaded with for every packet (as the classic filter does),
/// except for bypassed ones, for which it returns 0: the kernel does not
/// copy them into the ring, and does not count them as drops.
#[derive(Debug)]
pub struct SocketBypass {
    /// The loaded object: its program is what [`SocketBypass::attach`]
    /// puts on sockets.
    obj: Object,
    /// `mailtap_sfstats`.
    stats: MapHandle,
    map: BypassMap,
    snaplen: u32,
}

/// The filter's program in the object.
const PROG_NAME: &str = "mailtap_sockflt";

impl SocketBypass {
    /// Loads the filter with `snaplen` (use the rings'
    /// [`PacketRingConfig::effective_snaplen`](crate::afpacket::PacketRingConfig::effective_snaplen))
    /// and a bypass map for `connections` connections (two entries each).
    /// Needs CAP_BPF (or root); errors name the step.
    pub fn load(snaplen: u32, connections: u32) -> Result<SocketBypass, CaptureError> {
        crate::steering::route_library_logs();
        let logs = crate::steering::HeldLibLogs::start();
        let r = Self::load_inner(snaplen, connections);
        if r.is_ok() {
            logs.succeeded();
        }
        r
    }

    fn load_inner(snaplen: u32, connections: u32) -> Result<SocketBypass, CaptureError> {
        let what = |s: &str| format!("AF_PACKET bypass socket filter: {s}");
        let invalid = |s: String| {
            CaptureError::new(
                what("configuration"),
                io::Error::new(io::ErrorKind::InvalidInput, s),
            )
        };
        if snaplen == 0 {
            return Err(invalid("snaplen 0".into()));
        }
        let entries = map_entries(connections).map_err(invalid)?;
        let mut open = ObjectBuilder::default()
            .name("mailtap_sockfilter")
            .and_then(|b| b.open_memory(SOCKFILTER_OBJECT))
            .map_err(|e| {
                CaptureError::new(what("opening the embedded BPF object"), bpf_error(e))
            })?;
        let sizing = |e| CaptureError::new(what("sizing map mailtap_bypass"), e);
        open.maps_mut()
            .find(|m| m.name() == "mailtap_bypass")
            .ok_or_else(|| {
                sizing(io::Error::new(
                    io::ErrorKind::NotFound,
                    "not in the embedded object",
                ))
            })?
            .set_max_entries(entries)
            .map_err(|e| sizing(bpf_error(e)))?;
        let obj = open.load().map_err(|e| {
            let c = CaptureError::new(what("loading (bpf(BPF_PROG_LOAD))"), bpf_error(e));
            match c.source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => c.with_hint(
                    "loading a socket filter with a hash map needs CAP_BPF or root; AF_PACKET capture works without it, with no kernel bypass",
                ),
                _ => c,
            }
        })?;
        // A loaded map after checking its key and value sizes against the
        // layouts here.
        let map = |name: &str, key: usize, value: usize| {
            let err = |e| CaptureError::new(what(&format!("map {name:?}")), e);
            let m = obj.maps().find(|m| m.name() == name).ok_or_else(|| {
                err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "not in the embedded object",
                ))
            })?;
            let (ks, vs) = (m.key_size(), m.value_size());
            if ks as usize != key || vs as usize != value {
                return Err(err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "key/value size {ks}/{vs} differs from the Rust side's {key}/{value} (rebuild bpf/)"
                    ),
                )));
            }
            Ok(m)
        };
        let bypass = map("mailtap_bypass", KEY_SIZE, VALUE_SIZE)?;
        let cfg = map("mailtap_sfcfg", 4, 4)?;
        let stats = map("mailtap_sfstats", 4, 16)?;
        crate::steering::map_update(&cfg, 0, &snaplen.to_ne_bytes())
            .map_err(|e| CaptureError::new(what("writing the snap length"), e))?;
        if obj.progs().all(|p| p.name() != PROG_NAME) {
            return Err(CaptureError::new(
                what("program mailtap_sockflt"),
                io::Error::new(io::ErrorKind::NotFound, "not in the embedded object"),
            ));
        }
        let dup = |m: &Map<'_>, s: &str| {
            MapHandle::try_from(m).map_err(|e| CaptureError::new(what(s), bpf_error(e)))
        };
        let stats = dup(&stats, "duplicating the stats map fd")?;
        let map = BypassMap::new(
            dup(&bypass, "duplicating the bypass map fd")?,
            connections,
            "the AF_PACKET socket filter".into(),
        );
        tracing::debug!(
            snaplen,
            connections,
            "AF_PACKET bypass socket filter loaded"
        );
        Ok(SocketBypass {
            obj,
            stats,
            map,
            snaplen,
        })
    }

    /// The bypass map the filter consults.
    pub fn map(&self) -> BypassMap {
        self.map.clone()
    }

    /// The snap length it returns for packets it lets through.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Attaches the filter to an AF_PACKET socket (`SO_ATTACH_BPF`),
    /// replacing its filter atomically. On failure the socket keeps the
    /// filter it had.
    pub fn attach(&self, fd: BorrowedFd<'_>) -> Result<(), CaptureError> {
        let program = self.program();
        let prog: libc::c_int = program.as_fd().as_raw_fd();
        // SAFETY: SO_ATTACH_BPF reads an int (the program fd) of the size
        // we pass.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_BPF,
                (&prog as *const libc::c_int).cast::<c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(CaptureError::last_os(format!(
                "SO_ATTACH_BPF of the bypass socket filter on socket {}",
                fd.as_raw_fd()
            )));
        }
        Ok(())
    }

    /// Packets and IP bytes kept out of the rings, summed over CPUs
    /// (zeros, logged, if the counters cannot be read).
    pub fn counters(&self) -> (u64, u64) {
        match percpu_sum::<2>(&self.stats) {
            Ok([p, b]) => (p, b),
            Err(e) => {
                tracing::debug!("reading the AF_PACKET bypass counters: {e}");
                (0, 0)
            }
        }
    }

    /// The loaded program (mutable for test runs).
    pub(crate) fn program(&self) -> ProgramMut<'_> {
        self.obj
            .progs_mut()
            .find(|p| p.name() == PROG_NAME)
            .expect("checked when loaded")
    }
}
