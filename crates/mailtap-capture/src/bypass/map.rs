//! The `mailtap_bypass` map: insert, take and count connections from user
//! space (one `bpf(2)` call each, per connection).

use super::*;

/// A handle on a `mailtap_bypass` map (of the XDP program or of the socket
/// filter): cheap to clone, shared by the worker threads (`Send + Sync`);
/// the map lives as long as a handle or its program does.
#[derive(Clone)]
pub struct BypassMap {
    map: Arc<MapHandle>,
    /// Connections it was sized for (max_entries / 2).
    connections: u32,
    /// Which map, for messages: "the XDP program on eth1", "the AF_PACKET
    /// socket filter".
    owner: Arc<str>,
}

impl fmt::Debug for BypassMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BypassMap")
            .field("owner", &self.owner)
            .field("fd", &self.map.as_fd().as_raw_fd())
            .field("connections", &self.connections)
            .finish()
    }
}

impl BypassMap {
    /// A handle on `map` (its key and value sizes checked against
    /// [`KEY_SIZE`] and [`VALUE_SIZE`] by the caller).
    pub(crate) fn new(map: MapHandle, connections: u32, owner: String) -> BypassMap {
        BypassMap {
            map: Arc::new(map),
            connections,
            owner: owner.into(),
        }
    }

    /// Starts bypassing one direction: inserts it with zero counters
    /// (`BPF_NOEXIST`). From now on its packets without SYN, FIN or RST
    /// are counted in the map instead of reaching user space.
    pub fn insert(&self, key: &BypassKey) -> Result<(), BypassInsertError> {
        let v = [0u8; VALUE_SIZE];
        match self.map.update(&key.to_bytes(), &v, MapFlags::NO_EXIST) {
            Ok(()) => Ok(()),
            Err(e) => match os_code(&e) {
                Some(libc::EEXIST) => Err(BypassInsertError::Exists),
                Some(libc::E2BIG | libc::ENOMEM) => Err(BypassInsertError::Full),
                _ => Err(BypassInsertError::Other(io::Error::other(format!(
                    "{key} into the bypass map of {}: {}",
                    self.owner,
                    bpf_error(e)
                )))),
            },
        }
    }

    /// Reads and removes one direction's counters in one step
    /// (`BPF_MAP_LOOKUP_AND_DELETE_ELEM`; before Linux 5.14 a lookup and
    /// a delete). None when it is not in the map. After this its packets
    /// reach user space again. A packet the kernel is counting at that
    /// very moment on another CPU may be lost from the counts.
    pub fn take(&self, key: &BypassKey) -> Option<BypassCounters> {
        let k = key.to_bytes();
        match self.map.lookup_and_delete(&k) {
            Ok(Some(v)) => self.counters(key, &v),
            // Not there (ENOENT).
            Ok(None) => None,
            Err(e) => match os_code(&e) {
                // Kernels before 5.14: no lookup-and-delete for hash maps.
                Some(libc::EINVAL | 524 /* ENOTSUPP */ | libc::EOPNOTSUPP) => {
                    let c = self.peek(key)?;
                    if let Err(e) = self.map.delete(&k) {
                        if os_code(&e) != Some(libc::ENOENT) {
                            self.log_failure("delete", key, bpf_error(e));
                        }
                    }
                    Some(c)
                }
                _ => {
                    self.log_failure("lookup and delete", key, bpf_error(e));
                    None
                }
            },
        }
    }

    /// One direction's counters so far, leaving it in the map; None when
    /// it is not there.
    pub fn peek(&self, key: &BypassKey) -> Option<BypassCounters> {
        match self.map.lookup(&key.to_bytes(), MapFlags::ANY) {
            Ok(Some(v)) => self.counters(key, &v),
            // Not there (ENOENT).
            Ok(None) => None,
            Err(e) => {
                self.log_failure("lookup", key, bpf_error(e));
                None
            }
        }
    }

    /// A value read from the map (of the map's value size, checked at
    /// load).
    fn counters(&self, key: &BypassKey, v: &[u8]) -> Option<BypassCounters> {
        match <&[u8; VALUE_SIZE]>::try_from(v) {
            Ok(v) => Some(BypassCounters::from_bytes(v)),
            Err(_) => {
                self.log_failure(
                    "lookup",
                    key,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} value bytes, not {VALUE_SIZE}", v.len()),
                    ),
                );
                None
            }
        }
    }

    /// Connections the map was sized for; it holds twice as many entries
    /// (one per direction).
    pub fn capacity(&self) -> u32 {
        self.connections
    }

    /// The kernel memory the map takes (its `memlock` in
    /// `/proc/self/fdinfo`), None when the kernel does not say.
    pub fn kernel_memory(&self) -> Option<u64> {
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            self.map.as_fd().as_raw_fd()
        ))
        .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
    }

    #[cold]
    fn log_failure(&self, op: &str, key: &BypassKey, e: io::Error) {
        tracing::warn!(
            owner = %self.owner,
            "bypass map {op} of {key} failed: {e}"
        );
    }
}

/// The map `max_entries` for `connections` (two directions each; at least
/// 1, since a hash map cannot be empty), or an error over the limit.
pub(crate) fn map_entries(connections: u32) -> Result<u32, String> {
    if connections > MAX_BYPASS_CONNECTIONS {
        return Err(format!(
            "bypass_entries {connections} is more than the limit of {MAX_BYPASS_CONNECTIONS} connections"
        ));
    }
    Ok((connections * 2).max(1))
}

/// Sums the `N` u64 counters of entry 0 of a per-CPU array over the
/// possible CPUs (one value each, its size rounded up to 8, which N u64
/// are).
pub(crate) fn percpu_sum<const N: usize>(map: &MapHandle) -> io::Result<[u64; N]> {
    let vals = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(bpf_error)?
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    let mut acc = [0u64; N];
    for v in &vals {
        if v.len() != N * 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("per-CPU value of {} bytes, not {}", v.len(), N * 8),
            ));
        }
        for (a, x) in acc.iter_mut().zip(v.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(x);
            *a += u64::from_ne_bytes(w);
        }
    }
    Ok(acc)
}
