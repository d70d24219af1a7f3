//! The eBPF socket filter that gives AF_PACKET rings the same bypass, and
//! the libbpf object wrapper it (and the XDP loader) opens programs with.

use super::map::dup_fd;
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
    prog: OwnedFd,
    stats: OwnedFd,
    map: BypassMap,
    snaplen: u32,
}

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
        let obj = Object::open(SOCKFILTER_OBJECT, c"mailtap_sockfilter")
            .map_err(|e| CaptureError::new(what("opening the embedded BPF object"), e))?;
        obj.set_max_entries(c"mailtap_bypass", entries)
            .map_err(|e| CaptureError::new(what("sizing map mailtap_bypass"), e))?;
        obj.load().map_err(|e| {
            let c = CaptureError::new(what("loading (bpf(BPF_PROG_LOAD))"), e);
            match c.source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => c.with_hint(
                    "loading a socket filter with a hash map needs CAP_BPF or root; AF_PACKET capture works without it, with no kernel bypass",
                ),
                _ => c,
            }
        })?;
        let map = |name: &CStr, key: usize, value: usize| {
            obj.map_fd(name, key, value)
                .map_err(|e| CaptureError::new(what(&format!("map {name:?}")), e))
        };
        let bypass_fd = map(c"mailtap_bypass", KEY_SIZE, VALUE_SIZE)?;
        let cfg_fd = map(c"mailtap_sfcfg", 4, 4)?;
        let stats_fd = map(c"mailtap_sfstats", 4, 16)?;
        let key = 0u32;
        // SAFETY: a 4-byte key and a 4-byte value, the map's sizes
        // (checked above).
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                cfg_fd,
                (&key as *const u32).cast::<c_void>(),
                (&snaplen as *const u32).cast::<c_void>(),
                libbpf_sys::BPF_ANY.into(),
            )
        };
        if rc < 0 {
            return Err(CaptureError::new(
                what("writing the snap length"),
                crate::steering::lib_error(-rc),
            ));
        }
        let prog_fd = obj
            .prog_fd(c"mailtap_sockflt")
            .map_err(|e| CaptureError::new(what("program mailtap_sockflt"), e))?;
        let dup = |fd: RawFd, s: &str| dup_fd(fd).map_err(|e| CaptureError::new(what(s), e));
        let sb = SocketBypass {
            prog: dup(prog_fd, "duplicating the program fd")?,
            stats: dup(stats_fd, "duplicating the stats map fd")?,
            map: BypassMap::from_fd(bypass_fd, connections, "the AF_PACKET socket filter".into())
                .map_err(|e| CaptureError::new(what("duplicating the bypass map fd"), e))?,
            snaplen,
        };
        // The duplicates keep program and maps alive; the object goes.
        drop(obj);
        tracing::debug!(
            snaplen,
            connections,
            "AF_PACKET bypass socket filter loaded"
        );
        Ok(sb)
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
        let prog: libc::c_int = self.prog.as_raw_fd();
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
        match percpu_sum::<2>(self.stats.as_raw_fd()) {
            Ok([p, b]) => (p, b),
            Err(e) => {
                tracing::debug!("reading the AF_PACKET bypass counters: {e}");
                (0, 0)
            }
        }
    }

    /// The program's descriptor (for tests and diagnostics).
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
}

/// A libbpf object opened from an embedded ELF image; closed on drop
/// (program and map fds with it, unless duplicated).
pub(crate) struct Object(*mut libbpf_sys::bpf_object);

impl Object {
    pub(crate) fn open(image: &'static [u8], name: &CStr) -> io::Result<Object> {
        // SAFETY: all-zero is the documented "no options" value (sz set
        // below).
        let mut opts: libbpf_sys::bpf_object_open_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_object_open_opts>() as _;
        opts.object_name = name.as_ptr();
        // SAFETY: image is 'static and never written; libbpf reads the ELF
        // from it; name outlives the call (libbpf copies it).
        let obj = unsafe {
            libbpf_sys::bpf_object__open_mem(
                image.as_ptr().cast::<c_void>(),
                image.len() as _,
                &opts,
            )
        };
        if obj.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Object(obj))
    }

    fn map(&self, name: &CStr) -> io::Result<*mut libbpf_sys::bpf_map> {
        // SAFETY: self.0 is a valid object.
        let m = unsafe { libbpf_sys::bpf_object__find_map_by_name(self.0, name.as_ptr()) };
        if m.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in the embedded object",
            ));
        }
        Ok(m)
    }

    pub(crate) fn set_max_entries(&self, name: &CStr, n: u32) -> io::Result<()> {
        let m = self.map(name)?;
        // SAFETY: m belongs to the unloaded object; allowed before load.
        let rc = unsafe { libbpf_sys::bpf_map__set_max_entries(m, n) };
        if rc < 0 {
            return Err(crate::steering::lib_error(-rc));
        }
        Ok(())
    }

    pub(crate) fn load(&self) -> io::Result<()> {
        // SAFETY: a valid, not yet loaded object.
        let rc = unsafe { libbpf_sys::bpf_object__load(self.0) };
        if rc < 0 {
            return Err(crate::steering::lib_error(-rc));
        }
        Ok(())
    }

    /// The fd of a loaded map, after checking its key and value sizes
    /// against the layouts here.
    pub(crate) fn map_fd(&self, name: &CStr, key: usize, value: usize) -> io::Result<RawFd> {
        let m = self.map(name)?;
        // SAFETY: m is a map of the loaded object.
        let (fd, ks, vs) = unsafe {
            (
                libbpf_sys::bpf_map__fd(m),
                libbpf_sys::bpf_map__key_size(m),
                libbpf_sys::bpf_map__value_size(m),
            )
        };
        if ks as usize != key || vs as usize != value {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "key/value size {ks}/{vs} differs from the Rust side's {key}/{value} (rebuild bpf/)"
                ),
            ));
        }
        if fd < 0 {
            return Err(crate::steering::lib_error(-fd));
        }
        Ok(fd)
    }

    fn prog_fd(&self, name: &CStr) -> io::Result<RawFd> {
        // SAFETY: self.0 is a valid, loaded object.
        let p = unsafe { libbpf_sys::bpf_object__find_program_by_name(self.0, name.as_ptr()) };
        if p.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in the embedded object",
            ));
        }
        // SAFETY: p is a program of the loaded object.
        let fd = unsafe { libbpf_sys::bpf_program__fd(p) };
        if fd < 0 {
            return Err(crate::steering::lib_error(-fd));
        }
        Ok(fd)
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: a valid object from bpf_object__open_mem, closed once.
        unsafe { libbpf_sys::bpf_object__close(self.0) }
    }
}
