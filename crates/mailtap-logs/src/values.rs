//! Formatting of scalar values shared by both writers, and the per-record
//! truncation budget (Zeek's log writer limits).

use crate::{LogLimits, Truncations};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

/// `fmt::Write` over a byte vector, for `mailtap_core::time::write_secs6`.
pub(crate) struct VecFmt<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for VecFmt<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Seconds with six decimals (Zeek's `time`/`interval` in ASCII logs).
#[inline]
pub(crate) fn write_secs6(out: &mut Vec<u8>, nanos: i64) {
    // Writing into a Vec cannot fail.
    let _ = mailtap_core::time::write_secs6(&mut VecFmt(out), nanos);
}

/// Seconds as a JSON number: the microsecond-rounded value with trailing
/// zeros dropped but at least one decimal (`1254722767.529046`, `0.5`,
/// `3.0`), i.e. what Zeek's JSON writer prints for a microsecond timestamp.
pub(crate) fn write_secs_json(out: &mut Vec<u8>, nanos: i64) {
    let start = out.len();
    write_secs6(out, nanos);
    // write_secs6 always prints "<int>.<6 digits>".
    let mut end = out.len();
    while end > start + 2 && out[end - 1] == b'0' && out[end - 2] != b'.' {
        end -= 1;
    }
    out.truncate(end);
}

/// An address as Zeek prints it: IPv4 dotted quad; IPv6 compressed, lower
/// case (RFC 5952, as glibc's `inet_ntop`). IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) are IPv4 addresses to Zeek and print as `a.b.c.d`;
/// IPv4-compatible ones print `::a.b.c.d` like `inet_ntop` does.
pub(crate) fn write_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => write_v4(out, v4),
        IpAddr::V6(v6) => write_v6(out, v6),
    }
}

fn write_v4(out: &mut Vec<u8>, v4: Ipv4Addr) {
    let [a, b, c, d] = v4.octets();
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(a).as_bytes());
    out.push(b'.');
    out.extend_from_slice(buf.format(b).as_bytes());
    out.push(b'.');
    out.extend_from_slice(buf.format(c).as_bytes());
    out.push(b'.');
    out.extend_from_slice(buf.format(d).as_bytes());
}

fn write_v6(out: &mut Vec<u8>, v6: Ipv6Addr) {
    let w = v6.segments();
    if w[..5] == [0; 5] {
        let v4 = Ipv4Addr::new((w[6] >> 8) as u8, w[6] as u8, (w[7] >> 8) as u8, w[7] as u8);
        if w[5] == 0xffff {
            write_v4(out, v4);
            return;
        }
        // IPv4-compatible (deprecated) form, as inet_ntop: not for :: or ::1.
        if w[5] == 0 && !(w[6] == 0 && w[7] <= 1) {
            out.extend_from_slice(b"::");
            write_v4(out, v4);
            return;
        }
    }
    let _ = write!(out, "{v6}");
}

/// `YYYY-MM-DD-HH-MM-SS` in local time (Zeek's `#open`/`#close`); UTC where
/// the local time cannot be determined.
pub(crate) fn write_log_time(out: &mut Vec<u8>, t: SystemTime) {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (y, mo, d, h, mi, s) = local_civil(secs).unwrap_or_else(|| utc_civil(secs));
    let _ = write!(out, "{y:04}-{mo:02}-{d:02}-{h:02}-{mi:02}-{s:02}");
}

/// The system's time zone as libc finds it (`TZ`: a zone name, a path or
/// a POSIX rule; else `/etc/localtime`), read by jiff from the zoneinfo
/// database; `None` where there is none.
fn local_zone() -> Option<jiff::tz::TimeZone> {
    jiff::tz::TimeZone::try_system().ok()
}

fn local_civil(secs: i64) -> Option<(i64, u32, u32, u32, u32, u32)> {
    let t = jiff::Timestamp::from_second(secs).ok()?;
    let d = local_zone()?.to_datetime(t);
    let u = |v: i8| u32::try_from(v).ok();
    Some((
        i64::from(d.year()),
        u(d.month())?,
        u(d.day())?,
        u(d.hour())?,
        u(d.minute())?,
        u(d.second())?,
    ))
}

/// The Unix time of local midnight starting the day of `secs` (the first
/// instant of that day in the local zone, honouring DST); UTC midnight
/// where the local time cannot be determined.
pub(crate) fn local_start_of_day(secs: i64) -> i64 {
    local_midnight(secs).unwrap_or_else(|| secs - secs.rem_euclid(86_400))
}

/// Where midnight does not exist (a DST change at 0:00), the day starts at
/// its first instant, as mktime normalises it.
fn local_midnight(secs: i64) -> Option<i64> {
    let t = jiff::Timestamp::from_second(secs).ok()?;
    let day = t.to_zoned(local_zone()?).start_of_day().ok()?;
    Some(day.timestamp().as_second())
}

/// UTC calendar fields of a Unix time (Howard Hinnant's civil_from_days).
pub(crate) fn utc_civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod / 60 % 60, sod % 60)
}

/// Zeek's per-record log writer limits in action: every string (also inside
/// containers) is cut to `max_string_bytes` and to what is left of
/// `max_total_string_bytes`; every set/vector to `max_container_elements`
/// and what is left of `max_total_container_elements`. Once a total is used
/// up, further strings are written empty and further containers with no
/// elements. A limit of 0 means unlimited.
pub(crate) struct Budget<'l> {
    limits: &'l LogLimits,
    string_bytes: usize,
    container_elements: usize,
    pub(crate) truncations: Truncations,
}

impl<'l> Budget<'l> {
    pub(crate) fn new(limits: &'l LogLimits) -> Self {
        Budget {
            limits,
            string_bytes: 0,
            container_elements: 0,
            truncations: Truncations::default(),
        }
    }

    #[inline]
    pub(crate) fn string<'a>(&mut self, s: &'a [u8]) -> &'a [u8] {
        let l = self.limits;
        let mut allowed = s.len();
        if l.max_string_bytes > 0 {
            allowed = allowed.min(l.max_string_bytes);
        }
        if l.max_total_string_bytes > 0 {
            allowed = allowed.min(l.max_total_string_bytes.saturating_sub(self.string_bytes));
        }
        if allowed < s.len() {
            self.truncations.string = true;
        }
        self.string_bytes += allowed;
        &s[..allowed]
    }

    /// How many of `n` container elements may be written.
    #[inline]
    pub(crate) fn elements(&mut self, n: usize) -> usize {
        let l = self.limits;
        let mut allowed = n;
        if l.max_container_elements > 0 {
            allowed = allowed.min(l.max_container_elements);
        }
        if l.max_total_container_elements > 0 {
            allowed = allowed.min(
                l.max_total_container_elements
                    .saturating_sub(self.container_elements),
            );
        }
        if allowed < n {
            self.truncations.container = true;
        }
        self.container_elements += allowed;
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(a: &str) -> String {
        let mut o = Vec::new();
        write_addr(&mut o, a.parse().unwrap());
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn addresses() {
        assert_eq!(addr("10.10.1.4"), "10.10.1.4");
        assert_eq!(addr("0.0.0.0"), "0.0.0.0");
        assert_eq!(addr("::1"), "::1");
        assert_eq!(addr("::"), "::");
        assert_eq!(addr("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(
            addr("fe80::0202:b3ff:fe1e:8329"),
            "fe80::202:b3ff:fe1e:8329"
        );
        assert_eq!(addr("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(addr("::192.0.2.1"), "::192.0.2.1");
        assert_eq!(addr("2001:db8::"), "2001:db8::");
    }

    #[test]
    fn secs() {
        let f = |n: i64| {
            let mut o = Vec::new();
            write_secs_json(&mut o, n);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(f(1_254_722_767_529_046_400), "1254722767.529046");
        assert_eq!(f(1_500_000_000), "1.5");
        assert_eq!(f(3_000_000_000), "3.0");
        assert_eq!(f(0), "0.0");
        assert_eq!(f(1_000), "0.000001");
        assert_eq!(f(-1_500_000_000), "-1.5");
    }

    #[test]
    fn civil() {
        assert_eq!(utc_civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_civil(1_254_722_767), (2009, 10, 5, 6, 6, 7));
        assert_eq!(utc_civil(951_825_600), (2000, 2, 29, 12, 0, 0));
        assert_eq!(utc_civil(-1), (1969, 12, 31, 23, 59, 59));
        let mut o = Vec::new();
        write_log_time(&mut o, UNIX_EPOCH + Duration::from_secs(1_254_722_767));
        let s = String::from_utf8(o).unwrap();
        assert_eq!(s.len(), 19, "{s}");
        assert!(s.starts_with("2009-10-0"), "{s}");
    }

    #[test]
    fn budget() {
        let l = LogLimits {
            max_string_bytes: 5,
            max_container_elements: 3,
            max_total_container_elements: 4,
            max_total_string_bytes: 8,
        };
        let mut b = Budget::new(&l);
        assert_eq!(b.string(b"abc"), b"abc");
        assert!(!b.truncations.string);
        assert_eq!(b.string(b"abcdefg"), b"abcde");
        assert!(b.truncations.string);
        assert_eq!(b.string(b"xyz"), b"");
        assert_eq!(b.elements(2), 2);
        assert!(!b.truncations.container);
        assert_eq!(b.elements(5), 2);
        assert!(b.truncations.container);
        assert_eq!(b.elements(1), 0);
        let unlimited = LogLimits {
            max_string_bytes: 0,
            max_container_elements: 0,
            max_total_container_elements: 0,
            max_total_string_bytes: 0,
        };
        let mut b = Budget::new(&unlimited);
        assert_eq!(b.string(&[b'a'; 100_000]).len(), 100_000);
        assert_eq!(b.elements(10_000), 10_000);
        assert_eq!(b.truncations, Truncations::default());
    }
}
