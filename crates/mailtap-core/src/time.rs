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

    /// The latest time representable (2262-04-11): times from input
    /// beyond it are clamped here.
    pub const MAX: Timestamp = Timestamp(i64::MAX);
    /// The earliest time representable (1677-09-21).
    pub const MIN: Timestamp = Timestamp(i64::MIN);

    /// `secs` seconds plus `micros` microseconds; clamped to
    /// [`MIN`](Self::MIN)..=[`MAX`](Self::MAX) when out of range (the
    /// values may come from input: a capture file, a transcript header).
    pub fn from_secs_micros(secs: i64, micros: i64) -> Self {
        Self::from_parts(secs, micros, 1_000)
    }
    /// `secs` seconds plus `nanos` nanoseconds, clamped like
    /// [`from_secs_micros`](Self::from_secs_micros).
    pub fn from_secs_nanos(secs: i64, nanos: i64) -> Self {
        Self::from_parts(secs, nanos, 1)
    }
    /// `secs` seconds plus `nanos` nanoseconds, or None when that is not
    /// representable (for callers that report instead of clamping).
    pub fn checked_from_secs_nanos(secs: i64, nanos: i64) -> Option<Self> {
        secs.checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(nanos))
            .map(Timestamp)
    }
    fn from_parts(secs: i64, frac: i64, unit: i64) -> Self {
        // Exact in i128 (|secs * 1e9| < 2^94), then clamped to i64.
        let v = i128::from(secs) * 1_000_000_000 + i128::from(frac) * i128::from(unit);
        Timestamp(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// The interval from `earlier` to `self`, saturating at the ends of
    /// the range (timestamps from input may be anything).
    pub fn since(self, earlier: Timestamp) -> Interval {
        Interval(self.0.saturating_sub(earlier.0))
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

    #[test]
    fn out_of_range_input_times_clamp_instead_of_overflowing() {
        // A transcript epoch of -99999999999 (issue 12): i64 nanoseconds
        // end in 1677; the old `secs * 1e9` overflowed (a panic in debug).
        assert_eq!(
            Timestamp::from_secs_nanos(-99_999_999_999, 0),
            Timestamp::MIN
        );
        assert_eq!(
            Timestamp::from_secs_nanos(99_999_999_999, 0),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::from_secs_nanos(i64::MAX, i64::MAX),
            Timestamp::MAX
        );
        assert_eq!(Timestamp::from_secs_micros(i64::MIN, -1), Timestamp::MIN);
        assert_eq!(Timestamp::checked_from_secs_nanos(-99_999_999_999, 0), None);
        assert_eq!(
            Timestamp::checked_from_secs_nanos(1_700_000_000, 5),
            Some(Timestamp(1_700_000_000_000_000_005))
        );
        // In range: exact as before.
        assert_eq!(
            Timestamp::from_secs_micros(1_700_000_000, 123_456),
            Timestamp(1_700_000_000_123_456_000)
        );
        assert_eq!(Timestamp::from_secs_nanos(-1, 5), Timestamp(-999_999_995));
        assert_eq!(Timestamp::MAX.since(Timestamp::MIN), Interval(i64::MAX));
        // Formatting the extremes does not overflow either.
        assert_eq!(Timestamp::MIN.to_string(), "-9223372036.854776");
    }
}
