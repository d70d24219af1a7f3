//! The host-services check: AF_XDP takes the steered TCP from the kernel,
//! so attaching is refused where the host listens on a steered port.

use super::*;

pub(super) static ALLOW_HOST_SERVICES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Lets [`SteeringProgram::attach`] steer the mail ports of an interface
/// where the host itself listens on them (refused by default);
/// also `MAILTAP_XDP_HOST_SERVICES=allow` in the environment.
pub fn allow_host_services(allow: bool) {
    ALLOW_HOST_SERVICES.store(allow, std::sync::atomic::Ordering::Relaxed);
}

pub(super) fn host_services_allowed() -> bool {
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
pub(super) fn check_host_services(ifname: &str, cfg: &SteeringConfig) -> Result<(), CaptureError> {
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
            "AF_XDP steering takes the mail ports from the host's own listening services on this interface (allowed by live.xdp_host_services = \"allow\" or MAILTAP_XDP_HOST_SERVICES=allow): they receive nothing while mailtap runs"
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
         the host's addresses (a mirror/SPAN port, a tap or a dedicated NIC), or set live.xdp_host_services = \"allow\" (or MAILTAP_XDP_HOST_SERVICES=allow) \
         to steer anyway (see docs/deploy.md)",
    ))
}
