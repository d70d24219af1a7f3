//! The `mailtap_bypass` map: insert, take and count connections from user
//! space (one `bpf(2)` call each, per connection).

use super::*;

/// A handle on a `mailtap_bypass` map (of the XDP program or of the socket
/// filter): cheap to clone, shared by the worker threads (`Send + Sync`);
/// the map lives as long as a handle or its program does.
#[derive(Clone)]
pub struct BypassMap {
    fd: Arc<OwnedFd>,
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
            .field("fd", &self.fd.as_raw_fd())
            .field("connections", &self.connections)
            .finish()
    }
}

impl BypassMap {
    /// A handle on the map `fd` (duplicated: the caller keeps its own).
    pub(crate) fn from_fd(fd: RawFd, connections: u32, owner: String) -> io::Result<BypassMap> {
        Ok(BypassMap {
            fd: Arc::new(dup_fd(fd)?),
            connections,
            owner: owner.into(),
        })
    }

    /// Starts bypassing one direction: inserts it with zero counters
    /// (`BPF_NOEXIST`). From now on its packets without SYN, FIN or RST
    /// are counted in the map instead of reaching user space.
    pub fn insert(&self, key: &BypassKey) -> Result<(), BypassInsertError> {
        let k = key.to_bytes();
        let v = [0u8; VALUE_SIZE];
        // SAFETY: key and value buffers of the map's key and value sizes
        // (checked when the map was loaded); the kernel only reads them.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast::<c_void>(),
                v.as_ptr().cast::<c_void>(),
                libbpf_sys::BPF_NOEXIST.into(),
            )
        };
        match rc {
            0 => Ok(()),
            rc if rc == -libc::EEXIST => Err(BypassInsertError::Exists),
            rc if rc == -libc::E2BIG || rc == -libc::ENOMEM => Err(BypassInsertError::Full),
            rc => Err(BypassInsertError::Other(io::Error::other(format!(
                "{key} into the bypass map of {}: {}",
                self.owner,
                crate::steering::lib_error(-rc)
            )))),
        }
    }

    /// Reads and removes one direction's counters in one step
    /// (`BPF_MAP_LOOKUP_AND_DELETE_ELEM`; before Linux 5.14 a lookup and
    /// a delete). None when it is not in the map. After this its packets
    /// reach user space again. A packet the kernel is counting at that
    /// very moment on another CPU may be lost from the counts.
    pub fn take(&self, key: &BypassKey) -> Option<BypassCounters> {
        let k = key.to_bytes();
        let mut v = [0u8; VALUE_SIZE];
        // SAFETY: buffers of the map's key and value sizes; the kernel
        // writes at most VALUE_SIZE bytes into v.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast::<c_void>(),
                v.as_mut_ptr().cast::<c_void>(),
            )
        };
        match rc {
            0 => Some(BypassCounters::from_bytes(&v)),
            rc if rc == -libc::ENOENT => None,
            // Kernels before 5.14: no lookup-and-delete for hash maps.
            rc if rc == -libc::EINVAL || rc == -524 /* ENOTSUPP */ || rc == -libc::EOPNOTSUPP => {
                let c = self.peek(key)?;
                // SAFETY: a key buffer of the map's key size.
                let rc = unsafe {
                    libbpf_sys::bpf_map_delete_elem(
                        self.fd.as_raw_fd(),
                        k.as_ptr().cast::<c_void>(),
                    )
                };
                if rc < 0 && rc != -libc::ENOENT {
                    self.log_failure("delete", key, rc);
                }
                Some(c)
            }
            rc => {
                self.log_failure("lookup and delete", key, rc);
                None
            }
        }
    }

    /// One direction's counters so far, leaving it in the map; None when
    /// it is not there.
    pub fn peek(&self, key: &BypassKey) -> Option<BypassCounters> {
        let k = key.to_bytes();
        let mut v = [0u8; VALUE_SIZE];
        // SAFETY: buffers of the map's key and value sizes.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast::<c_void>(),
                v.as_mut_ptr().cast::<c_void>(),
            )
        };
        match rc {
            0 => Some(BypassCounters::from_bytes(&v)),
            rc if rc == -libc::ENOENT => None,
            rc => {
                self.log_failure("lookup", key, rc);
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
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fd.as_raw_fd())).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
    }

    #[cold]
    fn log_failure(&self, op: &str, key: &BypassKey, rc: i32) {
        tracing::warn!(
            owner = %self.owner,
            "bypass map {op} of {key} failed: {}",
            crate::steering::lib_error(-rc)
        );
    }
}

/// `fcntl(F_DUPFD_CLOEXEC)`.
pub(super) fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on an fd the caller holds open; the result is checked.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: d is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
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
/// possible CPUs.
pub(crate) fn percpu_sum<const N: usize>(fd: RawFd) -> io::Result<[u64; N]> {
    // SAFETY: a plain query of the possible-CPU mask.
    let ncpu = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    if ncpu <= 0 {
        return Err(crate::steering::lib_error(-ncpu));
    }
    // A per-CPU lookup returns one value (its size rounded up to 8, which
    // N u64 are) per possible CPU.
    let mut vals = vec![[0u64; N]; ncpu as usize];
    let key = 0u32;
    // SAFETY: vals has room for ncpu values of N u64 (the caller checked
    // the map's value size).
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd,
            (&key as *const u32).cast::<c_void>(),
            vals.as_mut_ptr().cast::<c_void>(),
        )
    };
    if rc < 0 {
        return Err(crate::steering::lib_error(-rc));
    }
    Ok(vals.iter().fold([0u64; N], |mut acc, v| {
        for (a, x) in acc.iter_mut().zip(v) {
            *a += x;
        }
        acc
    }))
}
