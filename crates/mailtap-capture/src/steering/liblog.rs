//! libbpf's and libxdp's own messages routed to `tracing`.

use super::*;

/// Sends libbpf's and libxdp's messages (verifier logs, dispatcher
/// fallbacks) to `tracing` instead of stderr. libbpf's go through
/// libbpf-rs, which formats them on every architecture; libxdp's only on
/// x86_64, where the C `va_list` it passes is a pointer we can hand on to
/// `vsnprintf` (elsewhere libxdp keeps printing to stderr).
pub(crate) fn route_library_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, libbpf_print)));
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: installs a callback with the signature libxdp
            // declares; it is a 'static function.
            unsafe { xdp::libxdp_set_print(Some(logs::libxdp_print)) };
        }
    });
}

/// libbpf's messages, formatted by libbpf-rs.
fn libbpf_print(level: libbpf_rs::PrintLevel, msg: String) {
    let level = match level {
        libbpf_rs::PrintLevel::Warn => LibLevel::Warn,
        libbpf_rs::PrintLevel::Info => LibLevel::Info,
        libbpf_rs::PrintLevel::Debug => LibLevel::Debug,
    };
    lib_log(level, msg.trim_end());
}

/// A libbpf/libxdp message level.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LibLevel {
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
pub(super) fn lib_log(level: LibLevel, msg: &str) {
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
pub(super) fn emit_lib_log(level: LibLevel, msg: &str, warn: bool) {
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
pub(super) mod logs {
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
}
