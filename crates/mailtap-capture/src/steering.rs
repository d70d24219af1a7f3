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
//! memory by libbpf (through libbpf-rs, on the libbpf that xsk-rs links)
//! and attached by libxdp, the same libxdp that xsk-rs links for the
//! AF_XDP sockets. libxdp puts it behind its multi-program
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
use libbpf_rs::{
    AsRawLibbpf, Map, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, OpenObject, Program,
};
use libxdp_sys as xdp;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
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
use loader::*;
pub(crate) use loader::{bpf_error, lib_error, map_update, os_code};

#[cfg(test)]
mod tests;

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

/// The u64 counters of the `mailtap_stats` value, per CPU: `struct
/// mailtap_stats` in `bpf/mailtap_xdp.c`, in the order of
/// [`SteeringCounters`]'s fields.
const STATS_FIELDS: usize = 8;

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
    /// `xsks_map` and `mailtap_stats`, for the `&self` methods that may
    /// run concurrently (`register_socket`, `counters`): only bpf(2) calls
    /// on their fds, which the kernel serialises. None until configured
    /// and once detached.
    xsks: Option<MapHandle>,
    stats: Option<MapHandle>,
    queues: u32,
    /// The bypass map, when `bypass_entries` > 0.
    bypass: Option<BypassMap>,
}

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

/// The loaded object from [`OBJECT`] with what holds its program on the
/// interface: a BPF link, or libxdp's program handle. Dropped in field
/// order: the link (the kernel detaches the program as it closes), then
/// libxdp's handle (it points into the object), then the object. Closing
/// the handle and the object does not detach: the kernel keeps a program
/// attached by libxdp alive through the interface (legacy) or through
/// libxdp's pins in bpffs (dispatcher).
struct Loaded {
    /// The BPF link holding the program on the interface (see
    /// [`AttachMethod::Link`]); closing it detaches the program.
    link: Option<OwnedFd>,
    /// libxdp's handle; None when attached through a BPF link.
    xdp: Option<XdpProg>,
    obj: Object,
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

        // Modes that failed, with why (Auto: native before SKB).
        let mut failed: Vec<(XdpMode, io::Error)> = Vec::new();
        for &m in modes {
            // A fresh object per attempt: a failed attempt may have loaded
            // the program for the dispatcher already.
            let open = open_object(queues, bypass_entries)
                .and_then(LibxdpOpen::new)
                .map_err(|e| CaptureError::new(what("opening the embedded BPF object"), e))?;
            let loaded = match open.attach(ifidx, m) {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::debug!(ifname, mode = %m, "attaching the XDP steering program failed: {e}");
                    failed.push((m, e));
                    continue;
                }
            };
            let mut prog = SteeringProgram {
                ifname: ifname.to_string(),
                ifindex: ifidx,
                mode: m,
                netns: current_netns(),
                loaded: Some(loaded),
                xsks: None,
                stats: None,
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
        let what = |s: &str| format!("XDP steering program on {}: {s}", self.ifname);
        let Some(loaded) = self.loaded.as_ref() else {
            return Err(CaptureError::new(
                what("configuring"),
                io::Error::other("program detached"),
            ));
        };
        let maps = fill_maps(&loaded.obj, cfg).map_err(|(s, e)| CaptureError::new(what(&s), e))?;
        self.xsks = Some(maps.xsks);
        self.stats = Some(maps.stats);
        if cfg.bypass_entries > 0 {
            self.bypass = Some(BypassMap::new(
                maps.bypass,
                cfg.bypass_entries,
                format!("the XDP program on {}", self.ifname),
            ));
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
        let Some(xsks) = self.xsks.as_ref() else {
            return Err(CaptureError::new(
                what(),
                io::Error::other("program detached"),
            ));
        };
        let value: u32 = u32::try_from(fd)
            .map_err(|_| CaptureError::new(what(), io::Error::from_raw_os_error(libc::EBADF)))?;
        map_update(xsks, queue, &value.to_ne_bytes()).map_err(|e| CaptureError::new(what(), e))
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
        match self.stats.as_ref() {
            Some(stats) => read_stats(stats),
            None => Err(io::Error::other("program detached")),
        }
    }

    /// Detaches the program (also done on drop, which logs errors).
    pub fn detach(mut self) -> Result<(), CaptureError> {
        self.detach_inner()
    }

    fn detach_inner(&mut self) -> Result<(), CaptureError> {
        let Some(mut loaded) = self.loaded.take() else {
            return Ok(());
        };
        self.xsks = None;
        self.stats = None;
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
        let prog = loaded
            .xdp
            .as_mut()
            .map_or(std::ptr::null_mut(), XdpProg::ptr);
        // SAFETY: prog is the handle we attached (libxdp matches it by
        // kernel program id), alive until `loaded` drops below; flags must
        // be 0.
        let rc =
            unsafe { xdp::xdp_program__detach(prog, self.ifindex as c_int, self.mode.libxdp(), 0) };
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
        let open = open_object(queues, bypass_entries)
            .map_err(|e| CaptureError::new(what("opening the embedded BPF object"), e))?;
        let obj = match open.load() {
            Ok(obj) => obj,
            Err(e) => {
                let e = CaptureError::new(
                what("loading the program into the kernel (needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)"),
                bpf_error(e),
            );
                if e.source.raw_os_error() == Some(libc::EPERM) {
                    return Err(e.with_hint(
                    "bpf() refused: without CAP_SYS_ADMIN, AF_XDP needs CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON \
                     and CAP_IPC_LOCK; in a container the runtime's default seccomp profile also blocks bpf() and \
                     perf_event_open() without CAP_SYS_ADMIN: use deploy/kubernetes/seccomp/mailtap-af-xdp.json \
                     (docs/deploy.md), or capture with --capture af-packet (CAP_NET_RAW only)",
                ));
                }
                return Err(e);
            }
        };
        let Some(bprog) = find_program(&obj, PROG_NAME) else {
            return Err(CaptureError::new(
                what("finding the program"),
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "no mailtap_xdp in the embedded object",
                ),
            ));
        };

        let mut failed: Vec<(XdpMode, io::Error)> = Vec::new();
        let mut replaced_stale = false;
        for &m in modes {
            let flags = match m {
                XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
                _ => libbpf_sys::XDP_FLAGS_SKB_MODE,
            };
            let mut r = link_create(bprog.as_fd(), ifidx, flags);
            if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EEXIST))
                && !replaced_stale
            {
                // Something is attached already: a stale program left by an
                // older mailtap (libxdp attached through netlink), another
                // tool's, or a live link (another running mailtap).
                replace_stale_without_link(ifname, ifidx)?;
                replaced_stale = true;
                r = link_create(bprog.as_fd(), ifidx, flags);
            }
            match r {
                Ok(fd) => {
                    let loaded = Loaded {
                        link: Some(fd),
                        xdp: None,
                        obj,
                    };
                    let mut prog = SteeringProgram {
                        ifname: ifname.to_string(),
                        ifindex: ifidx,
                        mode: m,
                        netns: current_netns(),
                        loaded: Some(loaded),
                        xsks: None,
                        stats: None,
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
