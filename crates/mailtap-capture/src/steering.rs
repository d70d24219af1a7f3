//! The XDP steering program: loads `bpf/mailtap_xdp.o` on an interface and
//! keeps its maps.
//!
//! The program (source and maps documented in `bpf/mailtap_xdp.c` and
//! `bpf/README.md`) redirects to the receiving queue's AF_XDP socket only
//! TCP on the configured mail ports (or all TCP), and passes everything
//! else to the kernel, so a host running the sensor keeps its network. A
//! wanted packet on a queue without a socket is passed too (the
//! `bpf_redirect_map` fallback), which is also what happens after the
//! sensor crashed: the kernel removes a closed socket from the map.
//!
//! The object is embedded in the binary (`include_bytes!`), opened from
//! memory by libbpf and attached by libxdp, the same libxdp that xsk-rs
//! links for the AF_XDP sockets. libxdp puts it behind its multi-program
//! dispatcher when bpffs is mounted (so other XDP programs can share the
//! interface), or attaches it alone when the dispatcher is unavailable.
//!
//! Without CAP_SYS_ADMIN (a container, a non-root service with ambient
//! capabilities) libxdp cannot find its program again by id, so the
//! program is attached through a BPF link instead: the kernel detaches it
//! when the link's fd closes, at exit, crash or SIGKILL alike, and a
//! restart finds the interface free (`MAILTAP_XDP_ATTACH=link|libxdp`
//! forces one way). With libxdp, [`SteeringProgram::attach`] first removes
//! a `mailtap_xdp` left on the interface by an earlier run that crashed.
//! The handle detaches on [`SteeringProgram::detach`] or on drop.
//!
//! AF_XDP takes the steered TCP from the kernel, so attach refuses an
//! interface where the host listens on a steered port on one of its
//! addresses, unless [`allow_host_services`] or
//! `MAILTAP_XDP_HOST_SERVICES=allow` (docs/deploy.md).

use crate::bypass::{self, BypassAction, BypassMap};
use crate::{ifindex, CaptureError};
use libxdp_sys as xdp;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::str::FromStr;

/// The compiled program, built by `bpf/build.sh` and committed with its
/// source; embedded so the sensor has no runtime file dependency.
static OBJECT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bpf/mailtap_xdp.o"
));

/// The program's name (its function in `bpf/mailtap_xdp.c`); how a stale
/// one from an earlier run is recognised on the interface.
const PROG_NAME: &str = "mailtap_xdp";

/// Upper bound on `SteeringConfig::max_queues` (xsks_map entries): far
/// above any NIC's queue count, low enough to reject a nonsense value.
const MAX_QUEUES_LIMIT: u32 = 65536;

/// Bytes of the `mail_ports` bitmap value: one bit per TCP port.
const PORT_BITMAP_BYTES: usize = 65536 / 8;

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode when the driver supports it, SKB mode
    /// otherwise.
    Auto,
    /// Driver mode: before the kernel allocates an skb; needed for
    /// zero-copy AF_XDP.
    Native,
    /// Generic mode: after the skb is built; works on any interface.
    Skb,
}

impl FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(XdpMode::Auto),
            "native" => Ok(XdpMode::Native),
            "skb" => Ok(XdpMode::Skb),
            _ => Err(format!("{s:?} is not an XDP mode (auto, native, skb)")),
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
        })
    }
}

impl XdpMode {
    fn libxdp(self) -> xdp::xdp_attach_mode {
        match self {
            XdpMode::Auto => xdp::xdp_attach_mode_XDP_MODE_UNSPEC,
            XdpMode::Native => xdp::xdp_attach_mode_XDP_MODE_NATIVE,
            XdpMode::Skb => xdp::xdp_attach_mode_XDP_MODE_SKB,
        }
    }
}

/// What the program steers to the sensor.
#[derive(Clone, Debug)]
pub struct SteeringConfig {
    /// TCP ports whose traffic (either direction) is redirected.
    pub ports: Vec<u16>,
    /// Redirect all TCP (dynamic protocol detection); `ports` is then moot.
    pub all_tcp: bool,
    /// Entries of `xsks_map`: sockets can be registered for queues
    /// `0..max_queues`. 0 means the interface's receive-queue count (from
    /// sysfs, which shows the namespace sysfs was mounted in: pass the
    /// count when attaching in another network namespace).
    pub max_queues: u32,
    /// What the program does with the packets of a bypassed connection
    /// (see [`crate::bypass`]): drop them (capture-only interface) or pass
    /// them to the host's stack.
    pub bypass_action: BypassAction,
    /// Connections the bypass map holds (two entries each, about
    /// [`bypass::BYTES_PER_CONNECTION`] bytes of kernel memory per
    /// connection); 0: no bypass, [`SteeringProgram::bypass_map`] is None
    /// and the program never consults the map.
    pub bypass_entries: u32,
}

/// The program's counters, summed over CPUs, since it was attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteeringCounters {
    /// Wanted and redirected to the queue's AF_XDP socket.
    pub redirected: u64,
    /// Not IPv4/IPv6 TCP (ARP, ICMP, UDP, ...): passed to the kernel.
    pub passed_not_tcp: u64,
    /// TCP on ports not wanted: passed.
    pub passed_other_port: u64,
    /// IP fragments (ports unknown; the kernel reassembles them): passed.
    pub passed_fragment: u64,
    /// Truncated or malformed headers (or an IPv6 extension chain longer
    /// than the program walks): passed.
    pub passed_malformed: u64,
    /// Wanted, but the receiving queue had no registered socket: passed
    /// (mail traffic the sensor did not see).
    pub passed_no_socket: u64,
    /// Wanted, but of a connection in the bypass map (and without SYN,
    /// FIN or RST): counted there, and dropped or passed as
    /// [`SteeringConfig::bypass_action`] says.
    pub bypassed_packets: u64,
    /// Their IP bytes (IPv4 total length, IPv6 payload length + 40).
    pub bypassed_bytes: u64,
}

/// The value of the `mailtap_stats` map, per CPU: `struct mailtap_stats`
/// in `bpf/mailtap_xdp.c`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct StatsValue {
    redirected: u64,
    passed_not_tcp: u64,
    passed_other_port: u64,
    passed_fragment: u64,
    passed_malformed: u64,
    passed_no_socket: u64,
    bypassed_packets: u64,
    bypassed_bytes: u64,
}

/// The program attached to one interface, with its maps.
pub struct SteeringProgram {
    ifname: String,
    ifindex: u32,
    /// Native or Skb: the mode it is attached in.
    mode: XdpMode,
    /// The network namespace (inode) it was attached in: the ifindex
    /// means something only there.
    netns: Option<u64>,
    /// None once detached.
    loaded: Option<Loaded>,
    xsks_fd: RawFd,
    stats_fd: RawFd,
    queues: u32,
    /// The bypass map, when `bypass_entries` > 0.
    bypass: Option<BypassMap>,
}

// SAFETY: the raw libbpf/libxdp pointers (in `loaded`) are only used by
// `attach` (before the value exists) and by `detach`/`Drop`, which take
// `self` by value or by `&mut`, so no two threads ever use them at once.
// The `&self` methods that may run concurrently (`register_socket`,
// `counters`) use only map file descriptors, through bpf(2) syscalls,
// which the kernel serialises; they never touch the pointers.
unsafe impl Send for SteeringProgram {}
// SAFETY: see Send: shared references reach only the map fds.
unsafe impl Sync for SteeringProgram {}

impl fmt::Debug for SteeringProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SteeringProgram")
            .field("ifname", &self.ifname)
            .field("mode", &self.mode)
            .field("queues", &self.queues)
            .field("attached", &self.loaded.is_some())
            .finish()
    }
}

/// A libbpf object opened from [`OBJECT`] and libxdp's program handle on
/// it; closed (program first) on drop. Closing does not detach: the
/// kernel keeps an attached program alive through the interface (legacy)
/// or through libxdp's pins in bpffs (dispatcher).
struct Loaded {
    obj: *mut xdp::bpf_object,
    /// libxdp's handle; null when attached through a BPF link.
    prog: *mut xdp::xdp_program,
    /// The BPF link holding the program on the interface (see
    /// [`AttachMethod::Link`]); closing it detaches the program.
    link: Option<std::os::fd::OwnedFd>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // The link first: the kernel detaches the program as it closes.
        drop(self.link.take());
        // SAFETY: both pointers came from successful libbpf/libxdp calls
        // (or are null) and are closed exactly once, here. The program was
        // created from the external object, so closing it leaves the
        // object to us, and it must go first since it points into it.
        unsafe {
            if !self.prog.is_null() {
                xdp::xdp_program__close(self.prog);
            }
            if !self.obj.is_null() {
                xdp::bpf_object__close(self.obj);
            }
        }
    }
}

impl SteeringProgram {
    /// Loads and attaches to `ifname`; first detaches any stale
    /// `mailtap_xdp` left on that interface by an earlier run that crashed
    /// (with a warning naming it). Auto tries native then SKB.
    ///
    /// The handle must be detached (or dropped) in the network namespace
    /// it was attached in.
    pub fn attach(ifname: &str, mode: XdpMode, cfg: &SteeringConfig) -> Result<Self, CaptureError> {
        route_library_logs();
        let logs = HeldLibLogs::start();
        let r = Self::attach_inner(ifname, mode, cfg);
        if r.is_ok() {
            logs.succeeded();
        }
        r
    }

    fn attach_inner(
        ifname: &str,
        mode: XdpMode,
        cfg: &SteeringConfig,
    ) -> Result<Self, CaptureError> {
        let shown = shown_name(ifname);
        let what = |s: &str| format!("XDP steering program on {shown}: {s}");
        let ifidx = ifindex(ifname)
            .map_err(|e| CaptureError::new(what("looking up the interface"), e.source))?;

        let queues = match cfg.max_queues {
            0 => u32::try_from(crate::rx_queue_count(ifname)).unwrap_or(MAX_QUEUES_LIMIT),
            n => n,
        };
        if queues > MAX_QUEUES_LIMIT {
            return Err(CaptureError::new(
                what("max_queues"),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{queues} queues is more than the limit of {MAX_QUEUES_LIMIT}"),
                ),
            ));
        }
        let bypass_entries = bypass::map_entries(cfg.bypass_entries).map_err(|e| {
            CaptureError::new(
                what("bypass_entries"),
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        if cfg.ports.is_empty() && !cfg.all_tcp {
            tracing::warn!(
                ifname,
                "XDP steering with no mail ports and all_tcp off: nothing will be redirected"
            );
        }

        check_host_services(ifname, cfg)?;

        let modes: &[XdpMode] = match mode {
            XdpMode::Auto => &[XdpMode::Native, XdpMode::Skb],
            XdpMode::Native => &[XdpMode::Native],
            XdpMode::Skb => &[XdpMode::Skb],
        };
        if AttachMethod::choose() == AttachMethod::Link {
            return Self::attach_link(ifname, ifidx, modes, queues, bypass_entries, cfg);
        }

        remove_stale(ifname, ifidx)?;

        let modes: &[XdpMode] = match mode {
            XdpMode::Auto => &[XdpMode::Native, XdpMode::Skb],
            XdpMode::Native => &[XdpMode::Native],
            XdpMode::Skb => &[XdpMode::Skb],
        };
        // Modes that failed, with why (Auto: native before SKB).
        let mut failed: Vec<(XdpMode, io::Error)> = Vec::new();
        for &m in modes {
            // A fresh object per attempt: a failed attempt may have loaded
            // the program for the dispatcher already.
            let loaded = open_object(queues, bypass_entries)
                .map_err(|e| CaptureError::new(what("opening the embedded BPF object"), e))?;
            // SAFETY: loaded.prog is a valid program handle on loaded.obj;
            // libxdp loads and attaches it (flags must be 0).
            let rc =
                unsafe { xdp::xdp_program__attach(loaded.prog, ifidx as c_int, m.libxdp(), 0) };
            if rc < 0 {
                let e = lib_error(-rc);
                tracing::debug!(ifname, mode = %m, "attaching the XDP steering program failed: {e}");
                failed.push((m, e));
                continue;
            }
            let mut prog = SteeringProgram {
                ifname: ifname.to_string(),
                ifindex: ifidx,
                mode: m,
                netns: current_netns(),
                loaded: Some(loaded),
                xsks_fd: -1,
                stats_fd: -1,
                queues,
                bypass: None,
            };
            // On failure `prog` is dropped here, which detaches it.
            prog.configure(cfg)?;
            // Behind libxdp's dispatcher, or alone (no bpffs, or a kernel
            // without freplace): worth knowing when other XDP programs
            // want the interface too.
            let dispatcher = Multiprog::get(ifidx)
                .ok()
                .flatten()
                // SAFETY: mp.0 is a valid multiprog handle.
                .map(|mp| !unsafe { xdp::xdp_multiprog__is_legacy(mp.0) });
            let fell_back: Vec<String> = failed.iter().map(|(m, e)| format!("{m}: {e}")).collect();
            tracing::info!(
                ifname,
                mode = %m,
                ?fell_back,
                ?dispatcher,
                queues,
                ports = ?cfg.ports,
                all_tcp = cfg.all_tcp,
                bypass_entries = cfg.bypass_entries,
                bypass_action = %cfg.bypass_action,
                "XDP steering program attached"
            );
            return Ok(prog);
        }
        let Some((m, e)) = failed.pop() else {
            return Err(CaptureError::new(
                what("attaching"),
                io::Error::other("no mode to try"),
            ));
        };
        let mut step = format!("attaching in {m} mode");
        for (m, e) in &failed {
            step.push_str(&format!(" ({m} mode failed too: {e})"));
        }
        Err(CaptureError::new(what(&step), e))
    }

    /// Finds the maps of the freshly attached program and fills the port
    /// set and the config. Between the attach and this, the port set is
    /// empty and the program passes all traffic: harmless, since no socket
    /// is registered yet either.
    fn configure(&mut self, cfg: &SteeringConfig) -> Result<(), CaptureError> {
        let obj = self.loaded.as_ref().map_or(std::ptr::null_mut(), |l| l.obj);
        let maps = fill_maps(obj, cfg).map_err(|(s, e)| {
            CaptureError::new(format!("XDP steering program on {}: {s}", self.ifname), e)
        })?;
        self.xsks_fd = maps.xsks_fd;
        self.stats_fd = maps.stats_fd;
        if cfg.bypass_entries > 0 {
            self.bypass = Some(
                BypassMap::from_fd(
                    maps.bypass_fd,
                    cfg.bypass_entries,
                    format!("the XDP program on {}", self.ifname),
                )
                .map_err(|e| {
                    CaptureError::new(
                        format!(
                            "XDP steering program on {}: duplicating the mailtap_bypass map fd",
                            self.ifname
                        ),
                        e,
                    )
                })?,
            );
        }
        Ok(())
    }

    /// The bypass map (see [`crate::bypass`]): None when
    /// `bypass_entries` was 0. Handles stay valid after the program is
    /// detached (the map then counts nothing).
    pub fn bypass_map(&self) -> Option<BypassMap> {
        self.bypass.clone()
    }

    /// The mode actually attached: Native or Skb.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Puts an AF_XDP socket fd into `xsks_map[queue]`, so the program
    /// redirects that queue's wanted traffic to it.
    pub fn register_socket(&self, queue: u32, fd: RawFd) -> Result<(), CaptureError> {
        let what = || {
            format!(
                "XDP steering program on {}: registering the AF_XDP socket of queue {queue}",
                self.ifname
            )
        };
        if queue >= self.queues {
            return Err(CaptureError::new(
                what(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "queue {queue} is beyond the {} queues of xsks_map (max_queues)",
                        self.queues
                    ),
                ),
            ));
        }
        if self.loaded.is_none() {
            return Err(CaptureError::new(
                what(),
                io::Error::other("program detached"),
            ));
        }
        let value: u32 = u32::try_from(fd)
            .map_err(|_| CaptureError::new(what(), io::Error::from_raw_os_error(libc::EBADF)))?;
        map_update(self.xsks_fd, queue, (&value as *const u32).cast())
            .map_err(|e| CaptureError::new(what(), e))
    }

    /// The program's counters, summed over CPUs; zeros (and a debug log)
    /// when the map cannot be read.
    pub fn counters(&self) -> SteeringCounters {
        match self.read_counters() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(ifname = %self.ifname, "reading the XDP steering counters: {e}");
                SteeringCounters::default()
            }
        }
    }

    fn read_counters(&self) -> io::Result<SteeringCounters> {
        if self.loaded.is_none() {
            return Err(io::Error::other("program detached"));
        }
        read_stats(self.stats_fd)
    }

    /// Detaches the program (also done on drop, which logs errors).
    pub fn detach(mut self) -> Result<(), CaptureError> {
        self.detach_inner()
    }

    fn detach_inner(&mut self) -> Result<(), CaptureError> {
        let Some(loaded) = self.loaded.take() else {
            return Ok(());
        };
        let what = format!("XDP steering program on {}: detaching", self.ifname);
        if loaded.link.is_some() {
            // Closing the link detaches the program, in whatever namespace
            // this runs: the link names the interface, not an ifindex.
            drop(loaded);
            tracing::info!(ifname = %self.ifname, "XDP steering program detached (BPF link closed)");
            return Ok(());
        }
        let here = current_netns();
        if self.netns.is_some() && here != self.netns {
            // The ifindex would name another interface (or none) here.
            // Closing the handles below leaves the program attached.
            return Err(CaptureError::new(
                what,
                io::Error::other("called from another network namespace than the attach; the program stays attached"),
            ));
        }
        // SAFETY: loaded.prog is the handle we attached (libxdp matches it
        // by kernel program id); flags must be 0.
        let rc = unsafe {
            xdp::xdp_program__detach(loaded.prog, self.ifindex as c_int, self.mode.libxdp(), 0)
        };
        drop(loaded);
        match rc {
            0 => {
                tracing::info!(ifname = %self.ifname, "XDP steering program detached");
                Ok(())
            }
            // Our program is no longer there: the interface went away, or
            // another run replaced it as stale. Nothing left to detach.
            rc if rc == -libc::ENOENT => {
                tracing::warn!(ifname = %self.ifname, "XDP steering program was already gone from the interface");
                Ok(())
            }
            rc => Err(CaptureError::new(what, lib_error(-rc))),
        }
    }

    /// Attaches through a BPF link ([`AttachMethod::Link`]): the program
    /// stays on the interface exactly as long as the link fd is open in
    /// this process, so a clean exit, a crash and SIGKILL all detach it,
    /// and nothing needs CAP_SYS_ADMIN (no program fd looked up by id).
    fn attach_link(
        ifname: &str,
        ifidx: u32,
        modes: &[XdpMode],
        queues: u32,
        bypass_entries: u32,
        cfg: &SteeringConfig,
    ) -> Result<Self, CaptureError> {
        let shown = shown_name(ifname);
        let what = |s: &str| format!("XDP steering program on {shown}: {s}");
        let mut loaded = open_object_unwrapped(queues, bypass_entries)
            .map_err(|e| CaptureError::new(what("opening the embedded BPF object"), e))?;
        let lobj = loaded.obj.cast::<libbpf_sys::bpf_object>();
        // SAFETY: lobj is the valid, opened (not yet loaded) object.
        let rc = unsafe { libbpf_sys::bpf_object__load(lobj) };
        if rc < 0 {
            let e = CaptureError::new(
                what("loading the program into the kernel (needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)"),
                lib_error(-rc),
            );
            if -rc == libc::EPERM {
                return Err(e.with_hint(
                    "bpf() refused: without CAP_SYS_ADMIN, AF_XDP needs CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON \
                     and CAP_IPC_LOCK; in a container the runtime's default seccomp profile also blocks bpf() and \
                     perf_event_open() without CAP_SYS_ADMIN: use deploy/kubernetes/seccomp/mailtap-af-xdp.json \
                     (docs/deploy.md), or capture with --capture af-packet (CAP_NET_RAW only)",
                ));
            }
            return Err(e);
        }
        let pname = std::ffi::CString::new(PROG_NAME).expect("no NUL");
        // SAFETY: lobj is loaded; the name is NUL-terminated.
        let bprog = unsafe { libbpf_sys::bpf_object__find_program_by_name(lobj, pname.as_ptr()) };
        if bprog.is_null() {
            return Err(CaptureError::new(
                what("finding the program"),
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "no mailtap_xdp in the embedded object",
                ),
            ));
        }
        // SAFETY: bprog belongs to the loaded object.
        let prog_fd = unsafe { libbpf_sys::bpf_program__fd(bprog) };
        if prog_fd < 0 {
            return Err(CaptureError::new(what("program fd"), lib_error(-prog_fd)));
        }

        let mut failed: Vec<(XdpMode, io::Error)> = Vec::new();
        let mut replaced_stale = false;
        for &m in modes {
            let flags = match m {
                XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
                _ => libbpf_sys::XDP_FLAGS_SKB_MODE,
            };
            let mut r = link_create(prog_fd, ifidx, flags);
            if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EEXIST))
                && !replaced_stale
            {
                // Something is attached already: a stale program left by an
                // older mailtap (libxdp attached through netlink), another
                // tool's, or a live link (another running mailtap).
                replace_stale_without_link(ifname, ifidx)?;
                replaced_stale = true;
                r = link_create(prog_fd, ifidx, flags);
            }
            match r {
                Ok(fd) => {
                    loaded.link = Some(fd);
                    let mut prog = SteeringProgram {
                        ifname: ifname.to_string(),
                        ifindex: ifidx,
                        mode: m,
                        netns: current_netns(),
                        loaded: Some(loaded),
                        xsks_fd: -1,
                        stats_fd: -1,
                        queues,
                        bypass: None,
                    };
                    prog.configure(cfg)?;
                    let fell_back: Vec<String> =
                        failed.iter().map(|(m, e)| format!("{m}: {e}")).collect();
                    tracing::info!(
                        ifname,
                        mode = %m,
                        ?fell_back,
                        queues,
                        ports = ?cfg.ports,
                        all_tcp = cfg.all_tcp,
                        bypass_entries = cfg.bypass_entries,
                        bypass_action = %cfg.bypass_action,
                        "XDP steering program attached through a BPF link (detached when mailtap exits, even if killed)"
                    );
                    return Ok(prog);
                }
                Err(e) => {
                    tracing::debug!(ifname, mode = %m, "attaching the XDP steering program (BPF link) failed: {e}");
                    failed.push((m, e));
                }
            }
        }
        let Some((m, e)) = failed.pop() else {
            return Err(CaptureError::new(
                what("attaching"),
                io::Error::other("no mode to try"),
            ));
        };
        let mut step = format!("attaching in {m} mode through a BPF link");
        for (m, e) in &failed {
            step.push_str(&format!(" ({m} mode failed too: {e})"));
        }
        if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EEXIST) {
            return Err(CaptureError::new(what(&step), e).with_hint(format!(
                "{shown} already has an XDP program held by a BPF link: another running mailtap (or another tool) owns it; \
                 stop that one first (`ip -d link show {shown}` shows the program)"
            )));
        }
        Err(CaptureError::new(what(&step), e))
    }
}

impl Drop for SteeringProgram {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner() {
            tracing::error!("{e}");
        }
    }
}

/// The mailtap_xdp programs currently attached to an interface (for tests
/// and `mailtap live` diagnostics): their kernel program ids.
pub fn attached_mailtap_programs(ifname: &str) -> Result<Vec<u32>, CaptureError> {
    let what = format!("XDP programs on {}", shown_name(ifname));
    let ifidx = ifindex(ifname).map_err(|e| CaptureError::new(&what, e.source))?;
    let Some(mp) = Multiprog::get(ifidx).map_err(|e| CaptureError::new(&what, e))? else {
        return Ok(Vec::new());
    };
    Ok(mp
        .mailtap_programs()
        .into_iter()
        // SAFETY: the programs belong to mp, which is alive.
        .map(|p| unsafe { xdp::xdp_program__id(p) })
        .collect())
}

/// Detaches every `mailtap_xdp` on the interface: left by an earlier run
/// that crashed (a clean exit detaches). Other programs in libxdp's
/// dispatcher stay.
fn remove_stale(ifname: &str, ifidx: u32) -> Result<(), CaptureError> {
    let what = |s: &str| format!("XDP steering program on {ifname}: {s}");
    let Some(mp) = Multiprog::get(ifidx)
        .map_err(|e| CaptureError::new(what("reading the attached XDP programs"), e))?
    else {
        return Ok(());
    };
    let mut stale = mp.mailtap_programs();
    if stale.is_empty() {
        return Ok(());
    }
    // SAFETY: the programs belong to mp, which is alive.
    let ids: Vec<u32> = stale
        .iter()
        .map(|&p| unsafe { xdp::xdp_program__id(p) })
        .collect();
    tracing::warn!(
        ifname,
        program_ids = ?ids,
        "replacing a stale {PROG_NAME} XDP program left on the interface by an earlier mailtap run (crashed?)"
    );
    // SAFETY: mp is alive; the stale programs are its own handles, which
    // libxdp matches by id against the interface's current programs.
    let rc = unsafe {
        xdp::xdp_program__detach_multi(
            stale.as_mut_ptr(),
            stale.len(),
            ifidx as c_int,
            xdp::xdp_multiprog__attach_mode(mp.0),
            0,
        )
    };
    if rc < 0 {
        return Err(CaptureError::new(
            what(&format!("detaching the stale {PROG_NAME} (ids {ids:?})")),
            lib_error(-rc),
        ));
    }
    Ok(())
}

/// How the program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttachMethod {
    /// libxdp (its multi-program dispatcher when bpffs is mounted, so
    /// other XDP programs can share the interface). Its detach and stale
    /// replacement look program fds up by id, which needs CAP_SYS_ADMIN;
    /// after SIGKILL the program stays until the next start replaces it.
    Libxdp,
    /// A BPF link owned by the process (kernel 5.9+): needs only CAP_BPF
    /// and CAP_NET_ADMIN, and the kernel detaches the program when the
    /// last fd of the link closes, at exit, crash or SIGKILL alike. The
    /// interface then holds only mailtap's program.
    Link,
}

impl AttachMethod {
    /// `MAILTAP_XDP_ATTACH=link|libxdp` when set; otherwise libxdp with
    /// CAP_SYS_ADMIN (root) and a BPF link without it (a container, a
    /// non-root service with ambient capabilities).
    fn choose() -> AttachMethod {
        match std::env::var("MAILTAP_XDP_ATTACH").as_deref() {
            Ok("link") => return AttachMethod::Link,
            Ok("libxdp") => return AttachMethod::Libxdp,
            Ok(other) => {
                tracing::warn!("MAILTAP_XDP_ATTACH={other:?} is neither link nor libxdp: ignored")
            }
            Err(_) => {}
        }
        if has_capability(CAP_SYS_ADMIN) {
            AttachMethod::Libxdp
        } else {
            AttachMethod::Link
        }
    }
}

const CAP_SYS_ADMIN: u32 = 21;

/// Whether the calling thread has `cap` in its effective set.
fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|m| m & (1u64 << cap) != 0)
}

/// `BPF_LINK_CREATE` of an XDP link on `ifidx` with `flags`
/// (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`).
fn link_create(prog_fd: RawFd, ifidx: u32, flags: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: all-zero is the "no options" value of this C struct.
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    opts.flags = flags;
    // SAFETY: prog_fd is a loaded XDP program; opts is valid for the call.
    let fd =
        unsafe { libbpf_sys::bpf_link_create(prog_fd, ifidx as c_int, libbpf_sys::BPF_XDP, &opts) };
    if fd < 0 {
        return Err(lib_error(-fd));
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The XDP program attached to `ifidx` (netlink; no capability needed):
/// (program id, attach mode as `XDP_ATTACHED_*`), id 0 when none.
fn xdp_query(ifidx: u32) -> io::Result<(u32, u8)> {
    // SAFETY: all-zero is a valid query result buffer (sz set).
    let mut opts: libbpf_sys::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _;
    // SAFETY: opts is valid for the call.
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifidx as c_int, 0, &mut opts) };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    Ok((opts.prog_id, opts.attach_mode))
}

/// The name of the program behind `fd`.
fn prog_name(fd: RawFd) -> io::Result<String> {
    // SAFETY: all-zero is a valid bpf_prog_info to fill.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info has len bytes.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    // SAFETY: the kernel NUL-terminates the name (16 bytes at most).
    let name = unsafe { CStr::from_ptr(info.name.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Closes a raw fd we own.
fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns fd and does not use it again.
    unsafe { libc::close(fd) };
}

/// A program was in the way of the BPF link. Removes it when it is a
/// stale mailtap_xdp (an older mailtap, attached by libxdp through
/// netlink, alone or behind libxdp's dispatcher); anything else is left
/// alone and the attach fails naming it.
fn replace_stale_without_link(ifname: &str, ifidx: u32) -> Result<(), CaptureError> {
    let what = |s: &str| format!("XDP steering program on {ifname}: {s}");
    let (id, attach_mode) = xdp_query(ifidx)
        .map_err(|e| CaptureError::new(what("querying the attached XDP program"), e))?;
    if id == 0 {
        return Ok(());
    }
    let mode_flags = match u32::from(attach_mode) {
        libbpf_sys::XDP_ATTACHED_DRV => libbpf_sys::XDP_FLAGS_DRV_MODE,
        libbpf_sys::XDP_ATTACHED_SKB => libbpf_sys::XDP_FLAGS_SKB_MODE,
        _ => 0,
    };
    // With CAP_SYS_ADMIN the program can be looked at directly.
    // SAFETY: a plain syscall wrapper.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    let identified: Option<(String, RawFd)> = if fd >= 0 {
        let name = prog_name(fd).unwrap_or_default();
        Some((name, fd))
    } else {
        None
    };
    match identified {
        Some((name, fd)) if name == PROG_NAME => {
            tracing::warn!(ifname, program_id = id, "replacing a stale {PROG_NAME} XDP program left on the interface by an earlier mailtap run");
            // SAFETY: all-zero opts with sz set; old_prog_fd pins the
            // detach to exactly that program.
            let mut opts: libbpf_sys::bpf_xdp_attach_opts = unsafe { std::mem::zeroed() };
            opts.sz = std::mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _;
            opts.old_prog_fd = fd;
            // SAFETY: opts valid for the call.
            let rc = unsafe { libbpf_sys::bpf_xdp_detach(ifidx as c_int, mode_flags, &opts) };
            close_fd(fd);
            if rc < 0 {
                return Err(CaptureError::new(
                    what(&format!("detaching the stale {PROG_NAME} (id {id})")),
                    lib_error(-rc),
                ));
            }
            Ok(())
        }
        Some((name, fd)) if name == "xdp_dispatcher" => {
            close_fd(fd);
            remove_stale(ifname, ifidx)
        }
        Some((name, fd)) => {
            close_fd(fd);
            Err(CaptureError::new(
                what("attaching"),
                io::Error::from_raw_os_error(libc::EBUSY),
            )
            .with_hint(format!(
                "{ifname} already has another XDP program ({name:?}, id {id}); mailtap does not remove it"
            )))
        }
        None => {
            // Without CAP_SYS_ADMIN: the ids are all netlink tells. A
            // dispatcher of libxdp's leaves its component programs pinned
            // in bpffs, where they can be opened by path.
            if let Some(names) = dispatcher_components(ifidx, id) {
                if !names.is_empty() && names.iter().all(|n| n == PROG_NAME) {
                    tracing::warn!(ifname, program_id = id, "replacing libxdp's dispatcher holding only a stale {PROG_NAME} (left by an earlier mailtap run)");
                    // SAFETY: no old_prog_fd (we cannot open it without
                    // CAP_SYS_ADMIN); the id was checked just above and a
                    // live BPF link cannot be removed this way.
                    let rc = unsafe {
                        libbpf_sys::bpf_xdp_detach(ifidx as c_int, mode_flags, std::ptr::null())
                    };
                    if rc < 0 {
                        return Err(CaptureError::new(
                            what(&format!("detaching the stale dispatcher (id {id})")),
                            lib_error(-rc),
                        ));
                    }
                    let _ =
                        std::fs::remove_dir_all(format!("/sys/fs/bpf/xdp/dispatch-{ifidx}-{id}"));
                    return Ok(());
                }
            }
            Err(CaptureError::new(
                what("attaching"),
                io::Error::from_raw_os_error(libc::EBUSY),
            )
            .with_hint(format!(
                "{ifname} already has an XDP program (id {id}) that mailtap cannot identify without CAP_SYS_ADMIN; \
                 if it is a {PROG_NAME} left by an older mailtap (one that attached through libxdp), remove it once with \
                 `ip link set dev {ifname} xdp off` (and `xdpgeneric off`), or start mailtap once with CAP_SYS_ADMIN"
            )))
        }
    }
}

/// The names of the programs libxdp pinned for its dispatcher `id` on
/// `ifidx` (`/sys/fs/bpf/xdp/dispatch-IFINDEX-ID/progN-prog`), when the
/// pins are there and readable.
fn dispatcher_components(ifidx: u32, id: u32) -> Option<Vec<String>> {
    let dir = std::fs::read_dir(format!("/sys/fs/bpf/xdp/dispatch-{ifidx}-{id}")).ok()?;
    let mut names = Vec::new();
    for e in dir.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !(n.starts_with("prog") && n.ends_with("-prog")) {
            continue;
        }
        let path = std::ffi::CString::new(e.path().as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) };
        if fd < 0 {
            return None;
        }
        let name = prog_name(fd);
        close_fd(fd);
        names.push(name.ok()?);
    }
    Some(names)
}

static ALLOW_HOST_SERVICES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Lets [`SteeringProgram::attach`] steer the mail ports of an interface
/// where the host itself listens on them (refused by default);
/// also `MAILTAP_XDP_HOST_SERVICES=allow` in the environment.
pub fn allow_host_services(allow: bool) {
    ALLOW_HOST_SERVICES.store(allow, std::sync::atomic::Ordering::Relaxed);
}

fn host_services_allowed() -> bool {
    ALLOW_HOST_SERVICES.load(std::sync::atomic::Ordering::Relaxed)
        || std::env::var("MAILTAP_XDP_HOST_SERVICES").as_deref() == Ok("allow")
}

/// The IP addresses configured on `ifname` (in the calling thread's
/// network namespace).
pub fn interface_addresses(ifname: &str) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p walks the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: NUL-terminated interface name.
        if unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() != ifname.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it says.
        unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    out.push(std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)).into());
                }
                libc::AF_INET6 => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    out.push(std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr).into());
                }
                _ => {}
            }
        }
    }
    // SAFETY: frees the list from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Listening TCP sockets of the calling thread's network namespace:
/// (address, port), from /proc/thread-self/net/tcp and tcp6.
pub fn tcp_listeners() -> Vec<(std::net::IpAddr, u16)> {
    let mut out = Vec::new();
    for f in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/thread-self/net/{f}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "0A" {
                continue;
            }
            let Some((addr, port)) = cols[1].split_once(':') else {
                continue;
            };
            let Ok(port) = u16::from_str_radix(port, 16) else {
                continue;
            };
            // The kernel prints each 32-bit word of the address as a host
            // integer.
            let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
                .map(|i| {
                    u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16)
                        .ok()
                        .map(u32::to_ne_bytes)
                })
                .collect();
            let Some(words) = words else { continue };
            let ip: std::net::IpAddr = match words.len() {
                1 => std::net::Ipv4Addr::from(words[0]).into(),
                4 => {
                    let mut b = [0u8; 16];
                    for (i, w) in words.iter().enumerate() {
                        b[i * 4..i * 4 + 4].copy_from_slice(w);
                    }
                    std::net::Ipv6Addr::from(b).into()
                }
                _ => continue,
            };
            out.push((ip, port));
        }
    }
    out
}

/// AF_XDP takes the steered TCP away from the kernel: on an interface that
/// carries the host's own traffic, every mail service the host runs there
/// stops receiving. Refused when the interface has addresses and the host
/// listens on a steered port on one of them (or on the wildcard address),
/// unless allowed ([`allow_host_services`]); a warning when it has
/// addresses but no such listener yet.
fn check_host_services(ifname: &str, cfg: &SteeringConfig) -> Result<(), CaptureError> {
    // IPv6 link-local addresses (every interface that is up has one) do
    // not make an interface the host's: mail is not served over them.
    let addrs: Vec<std::net::IpAddr> = interface_addresses(ifname)
        .into_iter()
        .filter(|a| match a {
            std::net::IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
            std::net::IpAddr::V4(_) => true,
        })
        .collect();
    if addrs.is_empty() {
        return Ok(());
    }
    let has_v4 = addrs.iter().any(|a| a.is_ipv4());
    let steered = |port: u16| cfg.all_tcp || cfg.ports.contains(&port);
    // 0.0.0.0 takes IPv4 on every address; :: (dual-stack) takes both.
    let reaches = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => has_v4,
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => true,
        ip => addrs.contains(ip),
    };
    let mut hit: Vec<String> = tcp_listeners()
        .into_iter()
        .filter(|(ip, port)| steered(*port) && reaches(ip))
        .map(|(ip, port)| std::net::SocketAddr::new(ip, port).to_string())
        .collect();
    hit.sort();
    hit.dedup();
    let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    if hit.is_empty() {
        tracing::warn!(
            ifname,
            addresses = ?shown,
            "AF_XDP on an interface with the host's own addresses: TCP on the steered ports goes to mailtap, not to the host \
             (a mail service started on it later would receive nothing); prefer a capture-only interface or --capture af-packet"
        );
        return Ok(());
    }
    if host_services_allowed() {
        tracing::warn!(
            ifname,
            listeners = ?hit,
            "AF_XDP steering takes the mail ports from the host's own listening services on this interface (allowed by MAILTAP_XDP_HOST_SERVICES=allow): they receive nothing while mailtap runs"
        );
        return Ok(());
    }
    Err(CaptureError::new(
        format!("XDP steering program on {ifname}: refusing to take the mail ports from the host's own services"),
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the host listens on {} (interface addresses {})",
                hit.join(", "),
                shown.join(", ")
            ),
        ),
    )
    .with_hint(
        "AF_XDP redirects the steered TCP to mailtap instead of the kernel, so these services would receive nothing. \
         Capture with --capture af-packet (it copies and takes nothing from the host), capture on an interface without \
         the host's addresses (a mirror/SPAN port, a tap or a dedicated NIC), or set MAILTAP_XDP_HOST_SERVICES=allow \
         to steer anyway (see docs/deploy.md)",
    ))
}

/// libxdp's view of the XDP programs on an interface: a dispatcher and its
/// component programs, or one "legacy" program without a dispatcher.
struct Multiprog(*mut xdp::xdp_multiprog);

impl Multiprog {
    /// None when the interface has no XDP program.
    fn get(ifidx: u32) -> io::Result<Option<Multiprog>> {
        // SAFETY: a query; the result is a handle, null or an encoded
        // error, told apart by libxdp_get_error.
        let mp = unsafe { xdp::xdp_multiprog__get_from_ifindex(ifidx as c_int) };
        // SAFETY: libxdp_get_error only inspects the pointer value.
        let err = unsafe { xdp::libxdp_get_error(mp as *const c_void) };
        if err != 0 {
            return match -err as i32 {
                libc::ENOENT => Ok(None),
                e => Err(lib_error(e)),
            };
        }
        Ok((!mp.is_null()).then_some(Multiprog(mp)))
    }

    /// The `mailtap_xdp` programs in it; handles owned by `self`.
    fn mailtap_programs(&self) -> Vec<*mut xdp::xdp_program> {
        let mut out = Vec::new();
        // SAFETY: self.0 is a valid multiprog; the program handles it
        // returns stay valid until it is closed.
        unsafe {
            if xdp::xdp_multiprog__is_legacy(self.0) {
                let p = xdp::xdp_multiprog__main_prog(self.0);
                if !p.is_null() && is_mailtap(p) {
                    out.push(p);
                }
            } else {
                let mut p = xdp::xdp_multiprog__next_prog(std::ptr::null(), self.0);
                while !p.is_null() {
                    if is_mailtap(p) {
                        out.push(p);
                    }
                    p = xdp::xdp_multiprog__next_prog(p, self.0);
                }
            }
        }
        out
    }
}

impl Drop for Multiprog {
    fn drop(&mut self) {
        // SAFETY: a valid handle from xdp_multiprog__get_from_ifindex,
        // closed once.
        unsafe { xdp::xdp_multiprog__close(self.0) }
    }
}

/// # Safety
/// `p` must be a valid libxdp program handle.
unsafe fn is_mailtap(p: *const xdp::xdp_program) -> bool {
    // SAFETY: per the contract; the name is a NUL-terminated string owned
    // by the handle (or null).
    let name = unsafe { xdp::xdp_program__name(p) };
    // SAFETY: checked non-null; NUL-terminated per libxdp.
    !name.is_null() && unsafe { CStr::from_ptr(name) }.to_bytes() == PROG_NAME.as_bytes()
}

/// Opens the embedded object with `xsks_map` sized for `queues`, and
/// wraps its program for libxdp. Nothing is loaded into the kernel yet.
fn open_object(queues: u32, bypass_entries: u32) -> io::Result<Loaded> {
    let mut loaded = open_object_unwrapped(queues, bypass_entries)?;
    // SAFETY: obj is valid; a null section name takes its first program.
    let prog = unsafe { xdp::xdp_program__from_bpf_obj(loaded.obj, std::ptr::null()) };
    // SAFETY: only inspects the pointer value.
    let err = unsafe { xdp::libxdp_get_error(prog as *const c_void) };
    if err != 0 || prog.is_null() {
        return Err(lib_error(if err != 0 { -err as i32 } else { libc::ENOENT }));
    }
    loaded.prog = prog;
    Ok(loaded)
}

/// Opens the embedded object with its maps sized; no libxdp handle.
fn open_object_unwrapped(queues: u32, bypass_entries: u32) -> io::Result<Loaded> {
    // SAFETY: bpf_object_open_opts is a plain C struct for which all-zero
    // is the documented "no options" value (sz set below).
    let mut opts: xdp::bpf_object_open_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<xdp::bpf_object_open_opts>();
    opts.object_name = c"mailtap_xdp".as_ptr();
    // SAFETY: OBJECT is 'static and never written; libbpf reads the ELF
    // image from it (bpftool skeletons do the same with const data).
    let obj = unsafe { xdp::bpf_object__open_mem(OBJECT.as_ptr().cast(), OBJECT.len(), &opts) };
    if obj.is_null() {
        return Err(io::Error::last_os_error());
    }
    let loaded = Loaded {
        obj,
        prog: std::ptr::null_mut(),
        link: None,
    };
    // SAFETY: obj is a valid, not yet loaded object.
    let map = unsafe { xdp::bpf_object__find_map_by_name(obj, c"xsks_map".as_ptr()) };
    if map.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no xsks_map in the embedded object",
        ));
    }
    // SAFETY: map belongs to the unloaded object; resizing is allowed
    // before load.
    let rc = unsafe { xdp::bpf_map__set_max_entries(map, queues.max(1)) };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    // SAFETY: as above.
    let map = unsafe { xdp::bpf_object__find_map_by_name(obj, c"mailtap_bypass".as_ptr()) };
    if map.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no mailtap_bypass in the embedded object",
        ));
    }
    // SAFETY: as above.
    let rc = unsafe { xdp::bpf_map__set_max_entries(map, bypass_entries.max(1)) };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    Ok(loaded)
}

/// The file descriptors of a loaded object's maps that the handle keeps.
struct Maps {
    xsks_fd: RawFd,
    stats_fd: RawFd,
    bypass_fd: RawFd,
}

/// The value of the `mailtap_cfg` map: `struct mailtap_cfg`.
#[repr(C)]
struct CfgValue {
    all_tcp: u32,
    /// 0: bypass off; else the XDP action for bypassed packets.
    bypass_action: u32,
}

/// Checks a loaded object's maps against the layouts here and writes the
/// port set and config into them. Errors say which map.
fn fill_maps(obj: *mut xdp::bpf_object, cfg: &SteeringConfig) -> Result<Maps, (String, io::Error)> {
    let map = |name: &CStr| -> Result<(RawFd, u32, u32), (String, io::Error)> {
        // SAFETY: obj is a loaded object, alive for this call (caller).
        let m = unsafe { xdp::bpf_object__find_map_by_name(obj, name.as_ptr()) };
        if m.is_null() {
            return Err((
                format!("map {name:?}"),
                io::Error::new(io::ErrorKind::NotFound, "not in the embedded object"),
            ));
        }
        // SAFETY: m is a map of the loaded object.
        let (fd, ksize, size) = unsafe {
            (
                xdp::bpf_map__fd(m),
                xdp::bpf_map__key_size(m),
                xdp::bpf_map__value_size(m),
            )
        };
        if fd < 0 {
            return Err((format!("map {name:?}"), lib_error(-fd)));
        }
        Ok((fd, ksize, size))
    };
    let (xsks_fd, _, _) = map(c"xsks_map")?;
    let (stats_fd, _, stats_size) = map(c"mailtap_stats")?;
    let (ports_fd, _, ports_size) = map(c"mail_ports")?;
    let (cfg_fd, _, cfg_size) = map(c"mailtap_cfg")?;
    let (bypass_fd, bypass_ksize, bypass_size) = map(c"mailtap_bypass")?;
    let mismatch = |name: &str| {
        (
            format!("map {name}"),
            io::Error::new(
                io::ErrorKind::InvalidData,
                "value size differs from steering.rs (rebuild bpf/)",
            ),
        )
    };
    if stats_size as usize != std::mem::size_of::<StatsValue>() {
        return Err(mismatch("mailtap_stats"));
    }
    if ports_size as usize != PORT_BITMAP_BYTES {
        return Err(mismatch("mail_ports"));
    }
    if cfg_size as usize != std::mem::size_of::<CfgValue>() {
        return Err(mismatch("mailtap_cfg"));
    }
    if bypass_ksize as usize != bypass::KEY_SIZE || bypass_size as usize != bypass::VALUE_SIZE {
        return Err(mismatch("mailtap_bypass"));
    }

    let bitmap = port_bitmap(&cfg.ports);
    map_update(ports_fd, 0, bitmap.as_ptr().cast())
        .map_err(|e| ("writing the mail port set".to_string(), e))?;
    let value = CfgValue {
        all_tcp: cfg.all_tcp.into(),
        bypass_action: if cfg.bypass_entries > 0 {
            cfg.bypass_action.xdp_action()
        } else {
            0
        },
    };
    map_update(cfg_fd, 0, (&value as *const CfgValue).cast())
        .map_err(|e| ("writing the config".to_string(), e))?;
    Ok(Maps {
        xsks_fd,
        stats_fd,
        bypass_fd,
    })
}

/// The `mail_ports` value: bit `p & 7` of byte `p >> 3` set for each port.
fn port_bitmap(ports: &[u16]) -> Vec<u8> {
    let mut bitmap = vec![0u8; PORT_BITMAP_BYTES];
    for &p in ports {
        bitmap[usize::from(p >> 3)] |= 1 << (p & 7);
    }
    bitmap
}

/// Sums the per-CPU values of the `mailtap_stats` map.
fn read_stats(stats_fd: RawFd) -> io::Result<SteeringCounters> {
    // SAFETY: a plain query of the possible-CPU mask.
    let ncpu = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    if ncpu <= 0 {
        return Err(lib_error(-ncpu));
    }
    // A per-CPU lookup returns one value (its size rounded up to 8 bytes;
    // ours is a multiple of 8 already) per possible CPU.
    let mut vals = vec![StatsValue::default(); ncpu as usize];
    let key = 0u32;
    // SAFETY: vals has room for ncpu values of the map's value size
    // (checked against StatsValue in fill_maps).
    let rc = unsafe {
        xdp::bpf_map_lookup_elem(
            stats_fd,
            (&key as *const u32).cast(),
            vals.as_mut_ptr().cast::<c_void>(),
        )
    };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    Ok(vals.iter().fold(SteeringCounters::default(), |mut c, v| {
        c.redirected += v.redirected;
        c.passed_not_tcp += v.passed_not_tcp;
        c.passed_other_port += v.passed_other_port;
        c.passed_fragment += v.passed_fragment;
        c.passed_malformed += v.passed_malformed;
        c.passed_no_socket += v.passed_no_socket;
        c.bypassed_packets += v.bypassed_packets;
        c.bypassed_bytes += v.bypassed_bytes;
        c
    }))
}

/// An interface name for a message: as is when it could be one, quoted
/// and escaped when it is empty or holds spaces or control characters.
fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()) {
        name.into()
    } else {
        format!("{name:?}").into()
    }
}

/// `bpf_map_update_elem(fd, &key, value, BPF_ANY)`.
fn map_update(fd: RawFd, key: u32, value: *const c_void) -> io::Result<()> {
    // SAFETY: key is a u32 (all our maps have 4-byte keys) and the caller
    // passes a value of the map's value size.
    let rc = unsafe {
        xdp::bpf_map_update_elem(fd, (&key as *const u32).cast(), value, xdp::BPF_ANY as u64)
    };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    Ok(())
}

/// An error from a negative libbpf/libxdp return: an errno, or one of
/// libbpf's own codes (4000 and up), which only libbpf can name.
pub(crate) fn lib_error(code: i32) -> io::Error {
    if code < 4000 {
        return io::Error::from_raw_os_error(code);
    }
    let mut buf = [0 as c_char; 128];
    // SAFETY: libbpf writes at most buf.len() bytes, NUL-terminated.
    unsafe { libbpf_sys::libbpf_strerror(-code, buf.as_mut_ptr(), buf.len() as _) };
    // SAFETY: NUL-terminated by libbpf_strerror (buf was zeroed besides).
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    io::Error::other(format!("libbpf error {code}: {msg}"))
}

/// The inode of the calling thread's network namespace.
fn current_netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// Sends libbpf's and libxdp's messages (verifier logs, dispatcher
/// fallbacks) to `tracing` instead of stderr. Only on x86_64, where the C
/// `va_list` they pass is a pointer we can hand on to `vsnprintf`;
/// elsewhere the libraries keep printing to stderr.
pub(crate) fn route_library_logs() {
    #[cfg(target_arch = "x86_64")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: installs callbacks with the signatures the libraries
            // declare; they are 'static functions.
            unsafe {
                xdp::libxdp_set_print(Some(logs::libxdp_print));
                libbpf_sys::libbpf_set_print(Some(logs::libbpf_print));
            }
        });
    }
}

/// A libbpf/libxdp message level.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LibLevel {
    Warn,
    Info,
    Debug,
}

std::thread_local! {
    /// Messages held back on this thread by [`HeldLibLogs`].
    static HELD: std::cell::RefCell<Option<Vec<(LibLevel, String)>>> =
        const { std::cell::RefCell::new(None) };
}

/// Logs a library message, or holds it back while a [`HeldLibLogs`] is
/// alive on this thread.
fn lib_log(level: LibLevel, msg: &str) {
    let held = HELD.with(|h| match h.borrow_mut().as_mut() {
        Some(v) => {
            v.push((level, msg.to_string()));
            true
        }
        None => false,
    });
    if !held {
        emit_lib_log(level, msg, true);
    }
}

/// INFO messages go to debug: they are notes such as libxdp's "XDP mode
/// not supported; try using SKB mode" or libbpf skipping libxdp's
/// `.xdp_run_config` section. The messages already start with "libbpf: "
/// or "libxdp: ".
fn emit_lib_log(level: LibLevel, msg: &str, warn: bool) {
    const T: &str = "mailtap_capture::steering::lib";
    match level {
        LibLevel::Warn if warn => tracing::warn!(target: T, "{msg}"),
        LibLevel::Warn | LibLevel::Info => tracing::debug!(target: T, "{msg}"),
        LibLevel::Debug => tracing::trace!(target: T, "{msg}"),
    }
}

/// Holds back this thread's libbpf/libxdp messages during an attach and
/// logs them when dropped: their warnings as warnings only if the attach
/// failed. An attach that works still makes the libraries warn: libxdp
/// probes the kernel for its dispatcher by loading test programs, which a
/// kernel or LSM may refuse (then it attaches our program alone), and Auto
/// may fail in native mode before SKB works.
pub(crate) struct HeldLibLogs {
    failed: bool,
}

impl HeldLibLogs {
    pub(crate) fn start() -> HeldLibLogs {
        HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
        HeldLibLogs { failed: true }
    }

    pub(crate) fn succeeded(mut self) {
        self.failed = false;
    }
}

impl Drop for HeldLibLogs {
    fn drop(&mut self) {
        let held = HELD.with(|h| h.borrow_mut().take()).unwrap_or_default();
        for (level, msg) in held {
            emit_lib_log(level, &msg, self.failed);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod logs {
    use super::{lib_log, LibLevel};
    use libxdp_sys as xdp;
    use std::ffi::{c_char, c_int, c_void, CStr};

    extern "C" {
        // On x86_64 a va_list argument is passed as a pointer to its
        // __va_list_tag, which is what the callbacks receive.
        fn vsnprintf(buf: *mut c_char, size: usize, fmt: *const c_char, ap: *mut c_void) -> c_int;
    }

    /// # Safety
    /// `fmt` and `ap` as passed by the library to its print callback.
    unsafe fn format(level: LibLevel, fmt: *const c_char, ap: *mut c_void) -> c_int {
        let mut buf = [0 as c_char; 1024];
        // SAFETY: per the contract; vsnprintf writes at most buf.len()
        // bytes including the NUL and consumes ap once.
        let n = unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), fmt, ap) };
        // SAFETY: vsnprintf NUL-terminated buf (truncating if needed).
        let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
        lib_log(level, msg.trim_end());
        n
    }

    pub(super) unsafe extern "C" fn libxdp_print(
        level: xdp::libxdp_print_level,
        fmt: *const c_char,
        ap: *mut xdp::__va_list_tag,
    ) -> c_int {
        let level = match level {
            xdp::libxdp_print_level_LIBXDP_WARN => LibLevel::Warn,
            xdp::libxdp_print_level_LIBXDP_INFO => LibLevel::Info,
            _ => LibLevel::Debug,
        };
        // SAFETY: called by libxdp with its format and arguments.
        unsafe { format(level, fmt, ap.cast()) }
    }

    pub(super) unsafe extern "C" fn libbpf_print(
        level: libbpf_sys::libbpf_print_level,
        fmt: *const c_char,
        ap: *mut libbpf_sys::__va_list_tag,
    ) -> c_int {
        let level = match level {
            libbpf_sys::LIBBPF_WARN => LibLevel::Warn,
            libbpf_sys::LIBBPF_INFO => LibLevel::Info,
            _ => LibLevel::Debug,
        };
        // SAFETY: called by libbpf with its format and arguments.
        unsafe { format(level, fmt, ap.cast()) }
    }
}

#[cfg(test)]
mod tests {
    //! The program's packet decisions, run in the kernel with
    //! BPF_PROG_TEST_RUN on crafted frames (root only): VLAN tags, IPv4
    //! options, IPv6 extension headers, fragments and truncation, which the
    //! veth tests in `tests/steering.rs` do not reach.

    /// A test that cannot run here: a failure with `MAILTAP_REQUIRE_ALL=1`
    /// (CI), otherwise said and recorded in `$MAILTAP_SKIP_LOG` (as the
    /// workspace tests' `common::skip`).
    fn skip(test: &str, why: &str) {
        if std::env::var("MAILTAP_REQUIRE_ALL").is_ok_and(|v| v == "1") {
            panic!("{test} cannot run here ({why}), and MAILTAP_REQUIRE_ALL=1 requires every test to run");
        }
        eprintln!("SKIPPED {test}: {why}");
        if let Some(p) = std::env::var_os("MAILTAP_SKIP_LOG") {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
            {
                use std::io::Write;
                let _ = writeln!(f, "{test}: {why}");
            }
        }
    }

    use super::*;

    #[test]
    fn steering_mode_parses_and_lists_choices() {
        assert_eq!("auto".parse::<XdpMode>(), Ok(XdpMode::Auto));
        assert_eq!("native".parse::<XdpMode>(), Ok(XdpMode::Native));
        assert_eq!("skb".parse::<XdpMode>(), Ok(XdpMode::Skb));
        let e = "drv".parse::<XdpMode>().unwrap_err();
        assert!(e.contains("drv") && e.contains("auto, native, skb"), "{e}");
        for m in [XdpMode::Auto, XdpMode::Native, XdpMode::Skb] {
            assert_eq!(m.to_string().parse::<XdpMode>(), Ok(m));
        }
    }

    #[test]
    fn steering_port_bitmap_sets_one_bit_per_port() {
        let b = port_bitmap(&[0, 25, 110, 587, 65535, 25]);
        assert_eq!(b.len(), PORT_BITMAP_BYTES);
        let set: Vec<u16> = (0..=u16::MAX)
            .filter(|&p| b[usize::from(p >> 3)] >> (p & 7) & 1 == 1)
            .collect();
        assert_eq!(set, vec![0, 25, 110, 587, 65535]);
    }

    /// The embedded object loaded as a plain XDP program (not attached),
    /// with its maps filled from `cfg`.
    struct TestProg {
        loaded: Loaded,
        prog_fd: RawFd,
        stats_fd: RawFd,
        bypass: Option<BypassMap>,
    }

    impl TestProg {
        fn load(cfg: &SteeringConfig) -> TestProg {
            route_library_logs();
            let entries = bypass::map_entries(cfg.bypass_entries).expect("bypass entries");
            let loaded = open_object(4, entries).expect("open embedded object");
            // SAFETY: a valid, unloaded object; SEC("xdp") makes it a
            // BPF_PROG_TYPE_XDP program.
            let rc = unsafe { xdp::bpf_object__load(loaded.obj) };
            assert_eq!(rc, 0, "loading: {}", lib_error(-rc));
            // SAFETY: the loaded object has this program.
            let prog_fd = unsafe {
                let p = xdp::bpf_object__find_program_by_name(loaded.obj, c"mailtap_xdp".as_ptr());
                assert!(!p.is_null());
                xdp::bpf_program__fd(p)
            };
            let maps = fill_maps(loaded.obj, cfg).expect("fill maps");
            let bypass = (cfg.bypass_entries > 0).then(|| {
                BypassMap::from_fd(maps.bypass_fd, cfg.bypass_entries, "test".into())
                    .expect("bypass map")
            });
            TestProg {
                loaded,
                prog_fd,
                stats_fd: maps.stats_fd,
                bypass,
            }
        }

        /// Runs the program on `frame`; its XDP action.
        fn run(&self, frame: &[u8]) -> u32 {
            let _ = &self.loaded;
            let mut out = vec![0u8; frame.len() + 256];
            // SAFETY: all-zero is a valid bpf_test_run_opts (sz set).
            let mut opts: xdp::bpf_test_run_opts = unsafe { std::mem::zeroed() };
            opts.sz = std::mem::size_of::<xdp::bpf_test_run_opts>();
            opts.data_in = frame.as_ptr().cast();
            opts.data_size_in = frame.len() as u32;
            opts.data_out = out.as_mut_ptr().cast();
            opts.data_size_out = out.len() as u32;
            opts.repeat = 1;
            // SAFETY: the buffers outlive the call and their sizes are
            // given.
            let rc = unsafe { xdp::bpf_prog_test_run_opts(self.prog_fd, &mut opts) };
            assert_eq!(rc, 0, "test run: {}", lib_error(-rc));
            opts.retval
        }

        fn counters(&self) -> SteeringCounters {
            read_stats(self.stats_fd).expect("read stats")
        }
    }

    const XDP_PASS: u32 = 2;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn vlan(tpid: u16, inner: &[u8]) -> Vec<u8> {
        // inner is a frame; insert the tag after the MAC addresses.
        let mut f = inner[..12].to_vec();
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x64]); // TCI: VLAN 100
        f.extend_from_slice(&inner[12..]);
        f
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x02; // SYN
        t
    }

    /// A TCP segment with `flags`, `seq` and `payload` bytes of payload.
    fn tcp_seg(sport: u16, dport: u16, seq: u32, flags: u8, payload: usize) -> Vec<u8> {
        let mut t = tcp(sport, dport);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[13] = flags;
        t.extend(std::iter::repeat_n(0x41, payload));
        t
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&8u16.to_be_bytes());
        u
    }

    /// An IPv4 header with `opt_words` 4-byte option words and the given
    /// flags/fragment-offset field.
    fn ipv4(proto: u8, opt_words: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + 4 * usize::from(opt_words);
        let mut h = vec![0u8; hl];
        h[0] = 0x40 | (5 + opt_words);
        h[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        for b in &mut h[20..] {
            *b = 1; // NOP options
        }
        h.extend_from_slice(payload);
        h
    }

    /// An IPv6 header followed by extension headers `(type, 8-byte units
    /// beyond the first 8)` chained to `last`.
    fn ipv6(exts: &[(u8, u8)], last: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, &(_, units)) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(last, |e| e.0);
            let mut e = vec![0u8; 8 * (usize::from(units) + 1)];
            e[0] = next;
            e[1] = units;
            body.extend_from_slice(&e);
        }
        body.extend_from_slice(payload);
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
        h[6] = exts.first().map_or(last, |e| e.0);
        h[7] = 64;
        h[8] = 0xfd;
        h[24] = 0xfd;
        h[23] = 1;
        h[39] = 2;
        h.extend_from_slice(&body);
        h
    }

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn steering_program_decisions() {
        if !root() {
            skip(concat!(file!(), ":", line!()), "needs root");
            return;
        }
        let cfg = SteeringConfig {
            ports: vec![25, 110, 587],
            all_tcp: false,
            max_queues: 4,
            bypass_action: BypassAction::Pass,
            bypass_entries: 0,
        };
        let p = TestProg::load(&cfg);
        const IP: u16 = 0x0800;
        const IP6: u16 = 0x86dd;
        let wanted = |c: &mut SteeringCounters| c.passed_no_socket += 1;
        let not_tcp = |c: &mut SteeringCounters| c.passed_not_tcp += 1;
        let other = |c: &mut SteeringCounters| c.passed_other_port += 1;
        let frag = |c: &mut SteeringCounters| c.passed_fragment += 1;
        let bad = |c: &mut SteeringCounters| c.passed_malformed += 1;
        type Case<'a> = (&'a str, Vec<u8>, &'a dyn Fn(&mut SteeringCounters));
        let cases: Vec<Case> = vec![
            (
                "v4 to 25",
                eth(IP, &ipv4(6, 0, 0, &tcp(40000, 25))),
                &wanted,
            ),
            (
                "v4 from 110",
                eth(IP, &ipv4(6, 0, 0, &tcp(110, 40000))),
                &wanted,
            ),
            (
                "v4 DF set",
                eth(IP, &ipv4(6, 0, 0x4000, &tcp(1, 587))),
                &wanted,
            ),
            (
                "v4 options",
                eth(IP, &ipv4(6, 10, 0, &tcp(40000, 587))),
                &wanted,
            ),
            (
                "v4 other port",
                eth(IP, &ipv4(6, 0, 0, &tcp(40000, 8080))),
                &other,
            ),
            (
                "v4 options other",
                eth(IP, &ipv4(6, 3, 0, &tcp(26, 24))),
                &other,
            ),
            (
                "v4 udp 25",
                eth(IP, &ipv4(17, 0, 0, &udp(40000, 25))),
                &not_tcp,
            ),
            (
                "v4 icmp",
                eth(IP, &ipv4(1, 0, 0, &[8, 0, 0, 0, 0, 0, 0, 0])),
                &not_tcp,
            ),
            ("arp", eth(0x0806, &[0u8; 28]), &not_tcp),
            (
                "v4 MF",
                eth(IP, &ipv4(6, 0, 0x2000, &tcp(40000, 25))),
                &frag,
            ),
            (
                "v4 offset",
                eth(IP, &ipv4(6, 0, 0x0010, &tcp(40000, 25))),
                &frag,
            ),
            (
                "vlan v4 25",
                vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(40000, 25)))),
                &wanted,
            ),
            (
                "qinq v4 25",
                vlan(
                    0x88a8,
                    &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(40000, 25)))),
                ),
                &wanted,
            ),
            (
                "3 tags",
                vlan(
                    0x8100,
                    &vlan(0x8100, &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(1, 25))))),
                ),
                &not_tcp,
            ),
            (
                "vlan v4 other",
                vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(1, 2)))),
                &other,
            ),
            (
                "v6 to 587",
                eth(IP6, &ipv6(&[], 6, &tcp(40000, 587))),
                &wanted,
            ),
            (
                "v6 hbh+dst",
                eth(IP6, &ipv6(&[(0, 0), (60, 1)], 6, &tcp(25, 40000))),
                &wanted,
            ),
            (
                "v6 routing other",
                eth(IP6, &ipv6(&[(43, 2)], 6, &tcp(80, 40000))),
                &other,
            ),
            ("v6 udp", eth(IP6, &ipv6(&[], 17, &udp(1, 25))), &not_tcp),
            (
                "v6 frag",
                eth(IP6, &ipv6(&[(44, 0)], 6, &tcp(40000, 25))),
                &frag,
            ),
            (
                "v6 hbh frag",
                eth(IP6, &ipv6(&[(0, 0), (44, 0)], 6, &tcp(1, 25))),
                &frag,
            ),
            (
                "v6 4 ext",
                eth(
                    IP6,
                    &ipv6(&[(0, 0), (60, 0), (43, 0), (60, 0)], 6, &tcp(1, 25)),
                ),
                &wanted,
            ),
            (
                "v6 5 ext",
                eth(
                    IP6,
                    &ipv6(
                        &[(0, 0), (60, 0), (43, 0), (60, 0), (60, 0)],
                        6,
                        &tcp(1, 25),
                    ),
                ),
                &bad,
            ),
            ("eth only", eth(IP, &[]), &bad),
            ("v4 short", eth(IP, &ipv4(6, 0, 0, &[])[..19]), &bad),
            (
                "v4 ihl 4",
                {
                    let mut f = eth(IP, &ipv4(6, 0, 0, &tcp(1, 25)));
                    f[14] = 0x44;
                    f
                },
                &bad,
            ),
            (
                "v4 version 6",
                {
                    let mut f = eth(IP, &ipv4(6, 0, 0, &tcp(1, 25)));
                    f[14] = 0x65;
                    f
                },
                &bad,
            ),
            (
                "v4 tcp short",
                eth(IP, &ipv4(6, 0, 0, &tcp(1, 25)[..10])),
                &bad,
            ),
            ("v4 options past end", eth(IP, &ipv4(6, 10, 0, &[])), &bad),
            ("v6 short", eth(IP6, &ipv6(&[], 6, &[])[..30]), &bad),
            (
                "v6 ext past end",
                eth(IP6, &ipv6(&[(0, 0)], 6, &[])[..44]),
                &bad,
            ),
        ];
        let mut expect = SteeringCounters::default();
        for (name, frame, count) in &cases {
            assert_eq!(p.run(frame), XDP_PASS, "{name}: no socket, so XDP_PASS");
            count(&mut expect);
            assert_eq!(p.counters(), expect, "{name}");
        }

        // all_tcp: any TCP is wanted, the rest unchanged.
        let p = TestProg::load(&SteeringConfig {
            ports: vec![],
            all_tcp: true,
            max_queues: 1,
            bypass_action: BypassAction::Pass,
            bypass_entries: 0,
        });
        p.run(&eth(IP, &ipv4(6, 0, 0, &tcp(40000, 8080))));
        p.run(&eth(IP6, &ipv6(&[], 6, &tcp(443, 40000))));
        p.run(&eth(IP, &ipv4(17, 0, 0, &udp(40000, 25))));
        p.run(&eth(IP, &ipv4(6, 0, 0x2000, &tcp(40000, 25))));
        let c = p.counters();
        assert_eq!(
            c,
            SteeringCounters {
                passed_no_socket: 2,
                passed_not_tcp: 1,
                passed_fragment: 1,
                ..Default::default()
            }
        );
    }

    const XDP_DROP: u32 = 1;
    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;

    fn key4(sport: u16, dport: u16) -> crate::bypass::BypassKey {
        crate::bypass::BypassKey {
            src: std::net::Ipv4Addr::new(10, 0, 0, 1).into(),
            src_port: sport,
            dst: std::net::Ipv4Addr::new(10, 0, 0, 2).into(),
            dst_port: dport,
        }
    }

    fn bypass_cfg(action: BypassAction, entries: u32) -> SteeringConfig {
        SteeringConfig {
            ports: vec![25, 587],
            all_tcp: false,
            max_queues: 1,
            bypass_action: action,
            bypass_entries: entries,
        }
    }

    fn mono_now() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes into ts.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// The bypass path on crafted frames: ordinary packets of an inserted
    /// direction are counted and dropped; SYN, FIN and RST, the other
    /// direction and other connections are not; seq_end is wrap-aware;
    /// VLAN and IPv6 (with extension headers) keys match; take() removes.
    #[test]
    fn steering_bypass_counts_and_drops() {
        if !root() {
            skip(concat!(file!(), ":", line!()), "needs root");
            return;
        }
        const IP: u16 = 0x0800;
        const IP6: u16 = 0x86dd;
        let p = TestProg::load(&bypass_cfg(BypassAction::Drop, 4));
        let map = p.bypass.clone().expect("bypass map");
        assert_eq!(map.capacity(), 4);
        let k = key4(40000, 25);
        map.insert(&k).expect("insert");
        assert!(matches!(
            map.insert(&k),
            Err(crate::bypass::BypassInsertError::Exists)
        ));
        assert_eq!(map.peek(&k), Some(Default::default()));
        let t0 = mono_now();

        let v4 = |seq: u32, flags: u8, len: usize| {
            eth(IP, &ipv4(6, 0, 0, &tcp_seg(40000, 25, seq, flags, len)))
        };
        // (frame, action, counted ip bytes)
        let cases: Vec<(&str, Vec<u8>, u32, Option<u64>)> = vec![
            ("syn", v4(0xffff_feff, 0x02, 0), XDP_PASS, None),
            ("ack", v4(0xffff_ff00, ACK, 0), XDP_DROP, Some(40)),
            ("data", v4(0xffff_ff00, PSH_ACK, 100), XDP_DROP, Some(140)),
            (
                "data wraps",
                v4(0x0000_0010, PSH_ACK, 50),
                XDP_DROP,
                Some(90),
            ),
            (
                "retransmit",
                v4(0xffff_ff00, PSH_ACK, 100),
                XDP_DROP,
                Some(140),
            ),
            (
                "ip options",
                eth(IP, &ipv4(6, 2, 0, &tcp_seg(40000, 25, 0x30, ACK, 0))),
                XDP_DROP,
                Some(48),
            ),
            (
                "vlan",
                vlan(0x8100, &v4(0x0000_0042, PSH_ACK, 10)),
                XDP_DROP,
                Some(50),
            ),
            ("fin", v4(0x0000_004c, 0x11, 0), XDP_PASS, None),
            ("rst", v4(0x0000_004d, 0x14, 0), XDP_PASS, None),
            (
                "reverse direction",
                eth(IP, &ipv4(6, 0, 0, &tcp_seg(25, 40000, 1, ACK, 0))),
                XDP_PASS,
                None,
            ),
            (
                "other connection",
                eth(IP, &ipv4(6, 0, 0, &tcp_seg(40001, 25, 1, ACK, 0))),
                XDP_PASS,
                None,
            ),
        ];
        let (mut pk, mut by) = (0u64, 0u64);
        for (name, frame, act, counted) in &cases {
            assert_eq!(p.run(frame), *act, "{name}");
            if let Some(b) = counted {
                pk += 1;
                by += b;
            }
            let c = p.counters();
            assert_eq!((c.bypassed_packets, c.bypassed_bytes), (pk, by), "{name}");
        }
        let c = p.counters();
        // SYN, FIN, RST, reverse and other: wanted, no socket.
        assert_eq!(c.passed_no_socket, 5, "{c:?}");
        assert_eq!(c.redirected, 0);
        let got = map.peek(&k).expect("still there");
        assert_eq!(got.packets, pk);
        assert_eq!(got.ip_bytes, by);
        // 0x42 + 10: the vlan frame's payload end; the retransmission
        // (before the wrap) did not move it back.
        assert_eq!(got.seq_end, Some(0x4c));
        assert!(got.last_seen_ns >= t0 && got.last_seen_ns <= mono_now());
        assert_eq!(map.peek(&k.reversed()), None);

        // take() returns the counters and removes the entry: the next
        // ordinary packet goes to the sensor again.
        assert_eq!(map.take(&k), Some(got));
        assert_eq!(map.take(&k), None);
        assert_eq!(map.peek(&k), None);
        assert_eq!(p.run(&v4(0x60, ACK, 0)), XDP_PASS);
        assert_eq!(p.counters().bypassed_packets, pk);

        // IPv6 with extension headers, both directions inserted.
        let s6: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
        let d6: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
        let k6 = crate::bypass::BypassKey {
            src: s6.into(),
            src_port: 40000,
            dst: d6.into(),
            dst_port: 587,
        };
        map.insert(&k6).unwrap();
        map.insert(&k6.reversed()).unwrap();
        let f6 = eth(
            IP6,
            &ipv6(&[(0, 0), (60, 1)], 6, &tcp_seg(40000, 587, 1000, ACK, 20)),
        );
        assert_eq!(p.run(&f6), XDP_DROP);
        let c6 = map.take(&k6).unwrap();
        assert_eq!(c6.packets, 1);
        // 40 + 8 + 16 (extension headers) + 20 (TCP) + 20 (payload).
        assert_eq!(c6.ip_bytes, 104);
        assert_eq!(c6.seq_end, Some(1020));
        assert_eq!(map.take(&k6.reversed()).unwrap().packets, 0);

        // Full at 2 x 4 entries.
        for port in 0..8 {
            map.insert(&key4(1000 + port, 25)).unwrap();
        }
        assert!(matches!(
            map.insert(&key4(2000, 25)),
            Err(crate::bypass::BypassInsertError::Full)
        ));
        for port in 0..8 {
            assert!(map.take(&key4(1000 + port, 25)).is_some());
        }
        map.insert(&key4(2000, 25)).unwrap();

        // Pass: counted the same, but XDP_PASS.
        let p = TestProg::load(&bypass_cfg(BypassAction::Pass, 1));
        let map = p.bypass.clone().unwrap();
        map.insert(&k).unwrap();
        assert_eq!(p.run(&v4(5, PSH_ACK, 10)), XDP_PASS);
        let c = p.counters();
        assert_eq!(
            (c.bypassed_packets, c.bypassed_bytes, c.passed_no_socket),
            (1, 50, 0)
        );
        assert_eq!(map.take(&k).unwrap().packets, 1);

        // No bypass map: never consulted.
        let p = TestProg::load(&bypass_cfg(BypassAction::Drop, 0));
        assert!(p.bypass.is_none());
        assert_eq!(p.run(&v4(5, PSH_ACK, 10)), XDP_PASS);
        assert_eq!(p.counters().bypassed_packets, 0);
    }

    /// The AF_PACKET socket filter's decisions on crafted frames, with
    /// BPF_PROG_TEST_RUN (here for the frame builders above). The test run
    /// pulls a 14-byte Ethernet header before running a socket filter, so
    /// each frame gets a 14-byte dummy header in front: the program then
    /// sees the frame from its Ethernet header, as on an AF_PACKET socket.
    #[test]
    fn sockfilter_bypass_decisions() {
        if !root() {
            skip(concat!(file!(), ":", line!()), "needs root");
            return;
        }
        const IP: u16 = 0x0800;
        const IP6: u16 = 0x86dd;
        const SNAP: u32 = 200;
        let sb = crate::bypass::SocketBypass::load(SNAP, 4).expect("load");
        let map = sb.map();
        let run = |frame: &[u8]| -> u32 {
            let mut data = vec![0x02, 0, 0, 0, 0, 9, 0x02, 0, 0, 0, 0, 8, 0x88, 0xb5];
            data.extend_from_slice(frame);
            // SAFETY: all-zero is a valid bpf_test_run_opts (sz set).
            let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
            opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
            opts.data_in = data.as_ptr().cast();
            opts.data_size_in = data.len() as u32;
            opts.repeat = 1;
            // SAFETY: the input buffer outlives the call; no output buffer.
            let rc = unsafe {
                libbpf_sys::bpf_prog_test_run_opts(
                    std::os::fd::AsRawFd::as_raw_fd(&sb.prog_fd()),
                    &mut opts,
                )
            };
            assert_eq!(rc, 0, "test run: {}", lib_error(-rc));
            opts.retval
        };
        let k = key4(40000, 25);
        map.insert(&k).unwrap();
        let s6: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
        let d6: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
        let k6 = crate::bypass::BypassKey {
            src: s6.into(),
            src_port: 40000,
            dst: d6.into(),
            dst_port: 587,
        };
        map.insert(&k6).unwrap();
        let seg4 = |flags: u8, len: usize| tcp_seg(40000, 25, 100, flags, len);
        // (name, frame, bypassed ip bytes or None: snap length returned)
        let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
            ("v4 ack", eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 0))), Some(40)),
            ("v4 syn", eth(IP, &ipv4(6, 0, 0, &seg4(0x02, 0))), None),
            ("v4 fin", eth(IP, &ipv4(6, 0, 0, &seg4(0x11, 0))), None),
            ("v4 rst", eth(IP, &ipv4(6, 0, 0, &seg4(0x04, 0))), None),
            (
                "v4 options",
                eth(IP, &ipv4(6, 10, 0, &seg4(PSH_ACK, 10))),
                // 60-byte IP header, 20 TCP, 10 payload.
                Some(90),
            ),
            (
                "qinq",
                vlan(
                    0x88a8,
                    &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 5)))),
                ),
                Some(45),
            ),
            (
                "3 tags",
                vlan(
                    0x8100,
                    &vlan(
                        0x8100,
                        &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 0)))),
                    ),
                ),
                None,
            ),
            (
                "v4 MF fragment",
                eth(IP, &ipv4(6, 0, 0x2000, &seg4(ACK, 0))),
                None,
            ),
            ("v4 udp", eth(IP, &ipv4(17, 0, 0, &seg4(ACK, 0))), None),
            (
                "v4 other port",
                eth(IP, &ipv4(6, 0, 0, &tcp_seg(40000, 26, 1, ACK, 0))),
                None,
            ),
            (
                "v4 truncated tcp",
                eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 0)[..12])),
                None,
            ),
            (
                "v6 hbh+dst",
                eth(
                    IP6,
                    &ipv6(&[(0, 0), (60, 1)], 6, &tcp_seg(40000, 587, 7, ACK, 3)),
                ),
                Some(40 + 8 + 16 + 20 + 3),
            ),
            (
                "v6 frag",
                eth(IP6, &ipv6(&[(44, 0)], 6, &tcp_seg(40000, 587, 7, ACK, 0))),
                None,
            ),
            (
                "v6 5 ext",
                eth(
                    IP6,
                    &ipv6(
                        &[(0, 0), (60, 0), (43, 0), (60, 0), (60, 0)],
                        6,
                        &tcp_seg(40000, 587, 7, ACK, 0),
                    ),
                ),
                None,
            ),
            ("arp", eth(0x0806, &[0u8; 28]), None),
        ];
        let (mut pk, mut by) = (0u64, 0u64);
        for (name, frame, bypassed) in &cases {
            let want = if bypassed.is_some() { 0 } else { SNAP };
            assert_eq!(run(frame), want, "{name}");
            if let Some(b) = bypassed {
                pk += 1;
                by += b;
            }
            assert_eq!(sb.counters(), (pk, by), "{name}");
        }
        let c4 = map.take(&k).unwrap();
        assert_eq!((c4.packets, c4.ip_bytes), (3, 40 + 90 + 45));
        assert_eq!(c4.seq_end, Some(110));
        let c6 = map.take(&k6).unwrap();
        assert_eq!((c6.packets, c6.seq_end), (1, Some(10)));
    }
}
