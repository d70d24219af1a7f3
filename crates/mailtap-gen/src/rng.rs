//! Small, fast, deterministic PRNG (xoshiro256++ seeded through SplitMix64).
//! Hand-rolled so the output never changes with a dependency upgrade.

#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

pub(crate) fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut x = seed;
        Rng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// A generator for stream `stream` derived from `seed`, independent of
    /// the others (used per session, so a session's content does not depend
    /// on how sessions interleave).
    pub(crate) fn derive(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let a = splitmix64(&mut x);
        Rng::new(a ^ stream)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform-ish in `0..n` (multiply-shift; bias is irrelevant here).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (returns `lo` when `hi <= lo`).
    #[inline]
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo).saturating_add(1))
        }
    }

    #[inline]
    pub(crate) fn range32(&mut self, lo: u32, hi: u32) -> u32 {
        self.range(lo as u64, hi as u64) as u32
    }

    /// True with probability `p` percent.
    #[inline]
    pub(crate) fn pct(&mut self, p: u32) -> bool {
        self.below(100) < p as u64
    }

    #[inline]
    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// `2^x` with basic IEEE operations only (no libm, whose last bits may
/// differ between platforms): exact power of two times a Taylor series of
/// `e^(f ln 2)` for the fraction `f` in `[0, 1)` (relative error < 1e-12).
pub(crate) fn exp2(x: f64) -> f64 {
    let x = x.clamp(-1000.0, 1000.0);
    let n = x.floor();
    let f = (x - n) * std::f64::consts::LN_2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=14 {
        term = term * f / k as f64;
        sum += term;
    }
    sum * f64::from_bits(((n as i64 + 1023) as u64) << 52)
}

/// A lognormal draw with `median` and shape `sigma_milli / 1000`. The
/// normal deviate is the Irwin-Hall sum of 12 uniforms minus 6 (bounded at
/// six sigma, which the callers' caps make irrelevant).
pub(crate) fn lognormal(rng: &mut Rng, median: u32, sigma_milli: u32) -> u64 {
    let mut z = -6.0;
    for _ in 0..12 {
        z += (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    }
    let sigma = sigma_milli as f64 / 1000.0;
    let v = median as f64 * exp2(sigma * z * std::f64::consts::LOG2_E);
    v.min(1e15) as u64
}

/// The mean of that lognormal: `median * e^(sigma^2 / 2)` (uncapped).
pub(crate) fn lognormal_mean(median: u32, sigma_milli: u32) -> u64 {
    let sigma = sigma_milli as f64 / 1000.0;
    let v = median as f64 * exp2(sigma * sigma / 2.0 * std::f64::consts::LOG2_E);
    v.min(1e15) as u64
}

/// A bijection on `u32` (the "lowbias32" integer hash): distinct inputs give
/// distinct outputs, which is what keeps session 4-tuples unique.
pub(crate) fn perm32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm32_is_injective_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000u32 {
            assert!(seen.insert(perm32(i)));
        }
    }

    #[test]
    fn exp2_and_lognormal() {
        for x in [-3.5f64, -1.0, 0.0, 0.25, 1.0, 7.7, 20.0] {
            let want = x.exp2();
            assert!(((exp2(x) - want) / want).abs() < 1e-12, "{x}");
        }
        let mut r = Rng::new(3);
        let mut v: Vec<u64> = (0..20_001)
            .map(|_| lognormal(&mut r, 4_000, 2_000))
            .collect();
        v.sort_unstable();
        let median = v[10_000];
        assert!((3_400..4_700).contains(&median), "{median}");
        let mean = v.iter().sum::<u64>() / v.len() as u64;
        assert!((18_000..45_000).contains(&mean), "{mean}");
        assert_eq!(lognormal_mean(4_000, 2_000), 29_556);
    }

    #[test]
    fn range_bounds() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let v = r.range(3, 9);
            assert!((3..=9).contains(&v));
        }
        assert_eq!(r.range(5, 5), 5);
        assert_eq!(r.range(6, 2), 6);
    }
}
