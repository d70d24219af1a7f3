//! Packet time and intervals, kept as integer nanoseconds so that arithmetic
//! is exact and formatting matches Zeek's six decimals.

use std::fmt;

/// Seconds since the Unix epoch, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A span of time in nanoseconds (Zeek `interval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(pub i64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_secs_micros(secs: i64, micros: i64) -> Self {
        Timestamp(secs * 1_000_000_000 + micros * 1_000)
    }
    pub fn from_secs_nanos(secs: i64, nanos: i64) -> Self {
        Timestamp(secs * 1_000_000_000 + nanos)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    pub fn since(self, earlier: Timestamp) -> Interval {
        Interval(self.0 - earlier.0)
    }
}

/// Writes nanoseconds as seconds with six decimals, rounded half away from
/// zero to the microsecond, the way Zeek prints `time` and `interval`.
pub fn write_secs6(out: &mut impl fmt::Write, nanos: i64) -> fmt::Result {
    let neg = nanos < 0;
    let abs = nanos.unsigned_abs();
    let micros = (abs + 500) / 1000;
    let (s, us) = (micros / 1_000_000, micros % 1_000_000);
    if neg && micros != 0 {
        out.write_char('-')?;
    }
    write!(out, "{s}.{us:06}")
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_secs6(f, self.0)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_secs6(f, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_decimals_rounded() {
        assert_eq!(
            Timestamp(1_254_722_767_529_046_400).to_string(),
            "1254722767.529046"
        );
        assert_eq!(
            Timestamp(1_254_722_767_529_046_500).to_string(),
            "1254722767.529047"
        );
        assert_eq!(Interval(461_731_000).to_string(), "0.461731");
        assert_eq!(Interval(0).to_string(), "0.000000");
        assert_eq!(Interval(-1_500_000_000).to_string(), "-1.500000");
    }
}
