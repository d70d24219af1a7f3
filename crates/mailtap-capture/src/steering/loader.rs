//! Opening the embedded object (libbpf-rs), libxdp's program handle on
//! it, filling its maps, reading its counters, and libbpf's error codes.

use super::*;

/// Opens the embedded object with `xsks_map` sized for `queues` and
/// `mailtap_bypass` for `bypass_entries`. Nothing is loaded into the
/// kernel yet.
pub(super) fn open_object(queues: u32, bypass_entries: u32) -> io::Result<OpenObject> {
    let mut obj = ObjectBuilder::default()
        .name("mailtap_xdp")
        .and_then(|b| b.open_memory(OBJECT))
        .map_err(bpf_error)?;
    for (name, entries) in [("xsks_map", queues), ("mailtap_bypass", bypass_entries)] {
        let mut map = obj.maps_mut().find(|m| m.name() == name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no {name} in the embedded object"),
            )
        })?;
        map.set_max_entries(entries.max(1)).map_err(bpf_error)?;
    }
    Ok(obj)
}

/// The loaded program `name` of `obj`.
pub(super) fn find_program<'a>(obj: &'a Object, name: &str) -> Option<Program<'a>> {
    obj.progs().find(|p| p.name() == name)
}

/// libxdp's handle on the program of an object we opened
/// (`xdp_program__from_bpf_obj`). It does not own the object but points
/// into it, so it is closed first: [`Loaded`] and [`LibxdpOpen`] declare
/// it before the object, and nothing else holds one.
pub(super) struct XdpProg(NonNull<xdp::xdp_program>);

// SAFETY: the handle is a heap object of libxdp's, tied to no thread. Its
// pointer is reached only through `&mut self` (`ptr`) and `Drop`, so it
// is used by one thread at a time wherever the value moves.
unsafe impl Send for XdpProg {}
// SAFETY: a shared `&XdpProg` gives no access to the pointer at all.
unsafe impl Sync for XdpProg {}

impl XdpProg {
    pub(super) fn ptr(&mut self) -> *mut xdp::xdp_program {
        self.0.as_ptr()
    }
}

impl Drop for XdpProg {
    fn drop(&mut self) {
        // SAFETY: a valid handle from xdp_program__from_bpf_obj, closed
        // once, here, while its object is still open (see the type).
        // Created from an external object, it leaves that object to us.
        unsafe { xdp::xdp_program__close(self.0.as_ptr()) }
    }
}

/// The opened object and libxdp's handle on its program: what the libxdp
/// attach path tries each mode with.
pub(super) struct LibxdpOpen {
    /// Before `open`: closed first.
    prog: XdpProg,
    open: OpenObject,
}

impl LibxdpOpen {
    /// Wraps the object's first program for libxdp.
    pub(super) fn new(open: OpenObject) -> io::Result<LibxdpOpen> {
        let raw = open.as_libbpf_object().as_ptr().cast::<xdp::bpf_object>();
        // SAFETY: raw is the opened, not yet loaded object, which the
        // returned value keeps open for as long as the handle; a null
        // section name takes its first program.
        let prog = unsafe { xdp::xdp_program__from_bpf_obj(raw, std::ptr::null()) };
        // SAFETY: only inspects the pointer value.
        let err = unsafe { xdp::libxdp_get_error(prog as *const c_void) };
        match NonNull::new(prog) {
            Some(p) if err == 0 => Ok(LibxdpOpen {
                prog: XdpProg(p),
                open,
            }),
            _ => Err(lib_error(if err != 0 { -err as i32 } else { libc::ENOENT })),
        }
    }

    /// libxdp loads the program and attaches it to `ifidx` in `mode`
    /// (through its dispatcher when it can). On failure both handles are
    /// closed: a failed attempt may have loaded the program already.
    pub(super) fn attach(self, ifidx: u32, mode: XdpMode) -> io::Result<Loaded> {
        let LibxdpOpen { mut prog, open } = self;
        // SAFETY: prog is a valid handle on the open object; flags must
        // be 0.
        let rc = unsafe { xdp::xdp_program__attach(prog.ptr(), ifidx as c_int, mode.libxdp(), 0) };
        if rc < 0 {
            drop(prog);
            drop(open);
            return Err(lib_error(-rc));
        }
        // SAFETY: the attach loaded the object (libxdp loads the program's
        // bpf_object before attaching it, and the maps are read from it
        // below); ownership of the pointer moves from `open`.
        let obj = unsafe { Object::from_ptr(open.take_ptr()) };
        Ok(Loaded {
            link: None,
            xdp: Some(prog),
            obj,
        })
    }
}

/// Handles on a loaded object's maps (duplicated descriptors, so they do
/// not borrow the object).
pub(super) struct Maps {
    pub(super) xsks: MapHandle,
    pub(super) stats: MapHandle,
    pub(super) bypass: MapHandle,
}

/// Bytes of the `mailtap_cfg` value, `struct mailtap_cfg`: `all_tcp` and
/// `bypass_action` (0: bypass off; else the XDP action for bypassed
/// packets), two u32.
pub(super) const CFG_VALUE_BYTES: usize = 8;

/// Checks a loaded object's maps against the layouts here and writes the
/// port set and config into them. Errors say which map.
pub(super) fn fill_maps(obj: &Object, cfg: &SteeringConfig) -> Result<Maps, (String, io::Error)> {
    let map = |name: &str| -> Result<Map<'_>, (String, io::Error)> {
        obj.maps().find(|m| m.name() == name).ok_or_else(|| {
            (
                format!("map {name:?}"),
                io::Error::new(io::ErrorKind::NotFound, "not in the embedded object"),
            )
        })
    };
    let xsks = map("xsks_map")?;
    let stats = map("mailtap_stats")?;
    let ports = map("mail_ports")?;
    let cfg_map = map("mailtap_cfg")?;
    let bypass = map("mailtap_bypass")?;
    let mismatch = |name: &str| {
        (
            format!("map {name}"),
            io::Error::new(
                io::ErrorKind::InvalidData,
                "value size differs from steering.rs (rebuild bpf/)",
            ),
        )
    };
    if stats.value_size() as usize != STATS_FIELDS * 8 {
        return Err(mismatch("mailtap_stats"));
    }
    if ports.value_size() as usize != PORT_BITMAP_BYTES {
        return Err(mismatch("mail_ports"));
    }
    if cfg_map.value_size() as usize != CFG_VALUE_BYTES {
        return Err(mismatch("mailtap_cfg"));
    }
    if bypass.key_size() as usize != bypass::KEY_SIZE
        || bypass.value_size() as usize != bypass::VALUE_SIZE
    {
        return Err(mismatch("mailtap_bypass"));
    }

    map_update(&ports, 0, &port_bitmap(&cfg.ports))
        .map_err(|e| ("writing the mail port set".to_string(), e))?;
    map_update(&cfg_map, 0, &cfg_value(cfg)).map_err(|e| ("writing the config".to_string(), e))?;
    let dup = |m: &Map<'_>, name: &str| {
        MapHandle::try_from(m).map_err(|e| (format!("duplicating the {name} map fd"), bpf_error(e)))
    };
    Ok(Maps {
        xsks: dup(&xsks, "xsks_map")?,
        stats: dup(&stats, "mailtap_stats")?,
        bypass: dup(&bypass, "mailtap_bypass")?,
    })
}

/// The `mailtap_cfg` value for `cfg`.
pub(super) fn cfg_value(cfg: &SteeringConfig) -> [u8; CFG_VALUE_BYTES] {
    let all_tcp = u32::from(cfg.all_tcp);
    let bypass_action = if cfg.bypass_entries > 0 {
        cfg.bypass_action.xdp_action()
    } else {
        0
    };
    let mut v = [0u8; CFG_VALUE_BYTES];
    v[..4].copy_from_slice(&all_tcp.to_ne_bytes());
    v[4..].copy_from_slice(&bypass_action.to_ne_bytes());
    v
}

/// The `mail_ports` value: bit `p & 7` of byte `p >> 3` set for each port.
pub(super) fn port_bitmap(ports: &[u16]) -> Vec<u8> {
    let mut bitmap = vec![0u8; PORT_BITMAP_BYTES];
    for &p in ports {
        bitmap[usize::from(p >> 3)] |= 1 << (p & 7);
    }
    bitmap
}

/// Sums the per-CPU values of the `mailtap_stats` map.
pub(super) fn read_stats(stats: &MapHandle) -> io::Result<SteeringCounters> {
    let [redirected, passed_not_tcp, passed_other_port, passed_fragment, passed_malformed, passed_no_socket, bypassed_packets, bypassed_bytes] =
        bypass::percpu_sum::<STATS_FIELDS>(stats)?;
    Ok(SteeringCounters {
        redirected,
        passed_not_tcp,
        passed_other_port,
        passed_fragment,
        passed_malformed,
        passed_no_socket,
        bypassed_packets,
        bypassed_bytes,
    })
}

/// An interface name for a message: as is when it could be one, quoted
/// and escaped when it is empty or holds spaces or control characters.
pub(super) fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()) {
        name.into()
    } else {
        format!("{name:?}").into()
    }
}

/// `bpf_map_update_elem(fd, &key, value, BPF_ANY)` on a map with 4-byte
/// keys; `value` must be of the map's value size.
pub(crate) fn map_update(map: &impl MapCore, key: u32, value: &[u8]) -> io::Result<()> {
    map.update(&key.to_ne_bytes(), value, MapFlags::ANY)
        .map_err(bpf_error)
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

/// The errno (or libbpf code) a libbpf-rs error came from, if any.
/// libbpf-rs 0.25 keeps the `io::Error` it made from the negative return
/// (or errno) but does not hand it out; its alternate form ends with that
/// error's "(os error N)" (pinned by the test
/// `steering_libbpf_rs_errors_keep_the_errno`).
pub(crate) fn os_code(e: &libbpf_rs::Error) -> Option<i32> {
    let s = format!("{e:#}");
    let rest = s.strip_suffix(')')?;
    let at = rest.rfind("(os error ")?;
    rest[at + "(os error ".len()..]
        .parse()
        .ok()
        .filter(|&c: &i32| c > 0)
}

/// A libbpf-rs error as the `io::Error` the raw call gave: the errno, or
/// libbpf's own code named by [`lib_error`]; else its message.
pub(crate) fn bpf_error(e: libbpf_rs::Error) -> io::Error {
    if let Some(code) = os_code(&e) {
        return lib_error(code);
    }
    let kind = match e.kind() {
        libbpf_rs::ErrorKind::NotFound => io::ErrorKind::NotFound,
        libbpf_rs::ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        libbpf_rs::ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
        libbpf_rs::ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
        libbpf_rs::ErrorKind::InvalidData => io::ErrorKind::InvalidData,
        libbpf_rs::ErrorKind::Unsupported => io::ErrorKind::Unsupported,
        libbpf_rs::ErrorKind::OutOfMemory => io::ErrorKind::OutOfMemory,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{e:#}"))
}

/// The inode of the calling thread's network namespace.
pub(super) fn current_netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}
