//! Attaching and detaching: a BPF link the process owns, or libxdp's
//! multi-program dispatcher; finding and replacing a stale `mailtap_xdp`
//! left by an earlier run.

use super::*;

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
pub(super) fn remove_stale(ifname: &str, ifidx: u32) -> Result<(), CaptureError> {
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
pub(super) enum AttachMethod {
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
    pub(super) fn choose() -> AttachMethod {
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

pub(super) const CAP_SYS_ADMIN: u32 = 21;

/// Whether the calling thread has `cap` in its effective set.
pub(super) fn has_capability(cap: u32) -> bool {
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
///
/// Raw libbpf: libbpf-rs's `Program::attach_xdp` creates the link with
/// no flags, which lets the kernel pick the mode (native when the driver
/// has it), so neither a forced SKB mode nor Auto's native-then-SKB
/// fallback could be expressed.
pub(super) fn link_create(prog: BorrowedFd<'_>, ifidx: u32, flags: u32) -> io::Result<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: prog is a loaded XDP program's fd; opts is valid for the
    // call (sz set, the rest the "no options" zeros).
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifidx as c_int, libbpf_sys::BPF_XDP, &opts)
    };
    if fd < 0 {
        return Err(lib_error(-fd));
    }
    // SAFETY: a new fd from the kernel that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The XDP program attached to `ifidx` (netlink; no capability needed):
/// (program id, attach mode as `XDP_ATTACHED_*`), id 0 when none.
///
/// Raw libbpf: libbpf-rs's `Xdp::query` wants a program fd, which there
/// is none of here.
pub(super) fn xdp_query(ifidx: u32) -> io::Result<(u32, u8)> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a valid, writable query result buffer (sz set) for
    // the call.
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifidx as c_int, 0, &mut opts) };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    Ok((opts.prog_id, opts.attach_mode))
}

/// The name of the program behind `fd`. (Raw libbpf: libbpf-rs 0.25
/// reads a program's info by fd only for its id.)
pub(super) fn prog_name(fd: BorrowedFd<'_>) -> io::Result<String> {
    use std::os::fd::AsRawFd;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a writable bpf_prog_info of len bytes.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        return Err(lib_error(-rc));
    }
    // The kernel NUL-terminates the name (16 bytes at most).
    let bytes = info.name.map(|c| c as u8);
    let name = CStr::from_bytes_until_nul(&bytes).unwrap_or_default();
    Ok(name.to_string_lossy().into_owned())
}

/// A program was in the way of the BPF link. Removes it when it is a
/// stale mailtap_xdp (an older mailtap, attached by libxdp through
/// netlink, alone or behind libxdp's dispatcher); anything else is left
/// alone and the attach fails naming it.
pub(super) fn replace_stale_without_link(ifname: &str, ifidx: u32) -> Result<(), CaptureError> {
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
    let identified: Option<(String, OwnedFd)> = libbpf_rs::Program::fd_from_id(id)
        .ok()
        .map(|fd| (prog_name(fd.as_fd()).unwrap_or_default(), fd));
    match identified {
        Some((name, fd)) if name == PROG_NAME => {
            tracing::warn!(ifname, program_id = id, "replacing a stale {PROG_NAME} XDP program left on the interface by an earlier mailtap run");
            // Raw libbpf: libbpf-rs's `Xdp::detach` cannot pin the detach
            // to one program (old_prog_fd).
            let opts = libbpf_sys::bpf_xdp_attach_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _,
                old_prog_fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                ..Default::default()
            };
            // SAFETY: opts is valid for the call (sz set); old_prog_fd,
            // open until `fd` drops below, pins the detach to exactly
            // that program.
            let rc = unsafe { libbpf_sys::bpf_xdp_detach(ifidx as c_int, mode_flags, &opts) };
            drop(fd);
            if rc < 0 {
                return Err(CaptureError::new(
                    what(&format!("detaching the stale {PROG_NAME} (id {id})")),
                    lib_error(-rc),
                ));
            }
            Ok(())
        }
        Some((name, fd)) if name == "xdp_dispatcher" => {
            drop(fd);
            remove_stale(ifname, ifidx)
        }
        Some((name, fd)) => {
            drop(fd);
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
pub(super) fn dispatcher_components(ifidx: u32, id: u32) -> Option<Vec<String>> {
    let dir = std::fs::read_dir(format!("/sys/fs/bpf/xdp/dispatch-{ifidx}-{id}")).ok()?;
    let mut names = Vec::new();
    for e in dir.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !(n.starts_with("prog") && n.ends_with("-prog")) {
            continue;
        }
        let fd = libbpf_rs::Program::fd_from_pinned_path(e.path()).ok()?;
        names.push(prog_name(fd.as_fd()).ok()?);
    }
    Some(names)
}

/// libxdp's view of the XDP programs on an interface: a dispatcher and its
/// component programs, or one "legacy" program without a dispatcher.
pub(super) struct Multiprog(pub(super) *mut xdp::xdp_multiprog);

impl Multiprog {
    /// None when the interface has no XDP program.
    pub(super) fn get(ifidx: u32) -> io::Result<Option<Multiprog>> {
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
    pub(super) fn mailtap_programs(&self) -> Vec<*mut xdp::xdp_program> {
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
