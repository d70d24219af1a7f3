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

mod attach;
mod host;
mod liblog;
mod loader;
pub use attach::attached_mailtap_programs;
use attach::*;
use host::*;
pub use host::{allow_host_services, interface_addresses, tcp_listeners};
pub(crate) use liblog::{route_library_logs, HeldLibLogs};
pub(crate) use loader::lib_error;
use loader::*;

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
