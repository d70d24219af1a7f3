//! Classic pcap framing and Internet checksums.

/// Global header: magic a1b2c3d4 (microseconds) written little-endian,
/// version 2.4, snaplen 262144, linktype 1 (Ethernet).
pub(crate) fn global_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone, sigfigs = 0
    h[16..20].copy_from_slice(&262_144u32.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// One's-complement accumulation of `data` as big-endian 16-bit words,
/// eight bytes at a time with end-around carry. `data` must start at an
/// even offset of the checksummed region.
#[inline]
pub(crate) fn sum_be(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, o) = acc.overflowing_add(w);
        acc = s + o as u64;
    }
    let r = chunks.remainder();
    if !r.is_empty() {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(r);
        let (s, o) = acc.overflowing_add(u64::from_be_bytes(b));
        acc = s + o as u64;
    }
    acc
}

/// Adds a 16-bit value (for pseudo-header fields).
#[inline]
pub(crate) fn add16(acc: u64, v: u64) -> u64 {
    let (s, o) = acc.overflowing_add(v);
    s + o as u64
}

/// Folds the accumulator and returns the one's-complement checksum.
#[inline]
pub(crate) fn finish(acc: u64) -> u16 {
    let mut a = (acc & 0xffff_ffff) + (acc >> 32);
    while a > 0xffff {
        a = (a & 0xffff) + (a >> 16);
    }
    !(a as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                (c[0] as u32) << 8 | c[1] as u32
            } else {
                (c[0] as u32) << 8
            };
            s += w;
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn matches_naive() {
        let mut x = 1u64;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| crate::rng::splitmix64(&mut x) as u8)
                .collect();
            assert_eq!(finish(sum_be(&data, 0)), naive(&data), "len {len}");
        }
        let ff = vec![0xffu8; 1000];
        assert_eq!(finish(sum_be(&ff, 0)), naive(&ff));
    }
}
