//! Opening the embedded object with libbpf, filling its maps, reading its
//! counters, and libbpf's error codes.

use super::*;

/// Opens the embedded object with `xsks_map` sized for `queues`, and
/// wraps its program for libxdp. Nothing is loaded into the kernel yet.
pub(super) fn open_object(queues: u32, bypass_entries: u32) -> io::Result<Loaded> {
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
pub(super) fn open_object_unwrapped(queues: u32, bypass_entries: u32) -> io::Result<Loaded> {
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
pub(super) struct Maps {
    pub(super) xsks_fd: RawFd,
    pub(super) stats_fd: RawFd,
    pub(super) bypass_fd: RawFd,
}

/// The value of the `mailtap_cfg` map: `struct mailtap_cfg`.
#[repr(C)]
pub(super) struct CfgValue {
    all_tcp: u32,
    /// 0: bypass off; else the XDP action for bypassed packets.
    bypass_action: u32,
}

/// Checks a loaded object's maps against the layouts here and writes the
/// port set and config into them. Errors say which map.
pub(super) fn fill_maps(
    obj: *mut xdp::bpf_object,
    cfg: &SteeringConfig,
) -> Result<Maps, (String, io::Error)> {
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
pub(super) fn port_bitmap(ports: &[u16]) -> Vec<u8> {
    let mut bitmap = vec![0u8; PORT_BITMAP_BYTES];
    for &p in ports {
        bitmap[usize::from(p >> 3)] |= 1 << (p & 7);
    }
    bitmap
}

/// Sums the per-CPU values of the `mailtap_stats` map.
pub(super) fn read_stats(stats_fd: RawFd) -> io::Result<SteeringCounters> {
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
pub(super) fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()) {
        name.into()
    } else {
        format!("{name:?}").into()
    }
}

/// `bpf_map_update_elem(fd, &key, value, BPF_ANY)`.
pub(super) fn map_update(fd: RawFd, key: u32, value: *const c_void) -> io::Result<()> {
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
pub(super) fn current_netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}
