//! Direction-independent flow keys.

use std::net::IpAddr;

/// A TCP 4-tuple in canonical order (the lower endpoint first), so that
/// both directions of a connection map to the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub a: (IpAddr, u16),
    pub b: (IpAddr, u16),
}

impl FlowKey {
    /// Builds the key and says whether `src` is the `a` side.
    pub fn new(src: IpAddr, sp: u16, dst: IpAddr, dp: u16) -> (FlowKey, bool) {
        let s = (src, sp);
        let d = (dst, dp);
        if s <= d {
            (FlowKey { a: s, b: d }, true)
        } else {
            (FlowKey { a: d, b: s }, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_same_key() {
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        let (k1, s1) = FlowKey::new(x, 40000, y, 25);
        let (k2, s2) = FlowKey::new(y, 25, x, 40000);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
    }
}
