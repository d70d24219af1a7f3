//! Hand-built packets and capture files for the unit tests.

use std::net::IpAddr;

use crate::decode::{checksum_fold, checksum_sum};

pub struct TcpSpec {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub options: Vec<u8>, // multiple of 4
    pub payload: Vec<u8>,
}

impl Default for TcpSpec {
    fn default() -> Self {
        TcpSpec {
            src_port: 40000,
            dst_port: 25,
            seq: 1000,
            ack: 2000,
            flags: 0x18,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// A TCP segment with a correct checksum for the given addresses.
pub fn tcp_segment(src: IpAddr, dst: IpAddr, t: &TcpSpec) -> Vec<u8> {
    assert_eq!(t.options.len() % 4, 0);
    let hl = 20 + t.options.len();
    let mut s = Vec::new();
    s.extend_from_slice(&t.src_port.to_be_bytes());
    s.extend_from_slice(&t.dst_port.to_be_bytes());
    s.extend_from_slice(&t.seq.to_be_bytes());
    s.extend_from_slice(&t.ack.to_be_bytes());
    s.push(((hl / 4) as u8) << 4);
    s.push(t.flags);
    s.extend_from_slice(&65535u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    s.extend_from_slice(&t.options);
    s.extend_from_slice(&t.payload);
    let mut pseudo = ip_bytes(src);
    pseudo.extend_from_slice(&ip_bytes(dst));
    let acc = checksum_sum(&pseudo, 6 + s.len() as u64);
    let c = !checksum_fold(checksum_sum(&s, acc));
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

pub fn fix_ipv4_checksum(ip: &mut [u8]) {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    ip[10] = 0;
    ip[11] = 0;
    let c = !checksum_fold(checksum_sum(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// IPv4 packet (DF set, TTL 64) around `payload`.
pub fn ipv4_packet(src: IpAddr, dst: IpAddr, options: &[u8], proto: u8, payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = 20 + options.len();
    let total = ihl + payload.len();
    let mut p = vec![(4 << 4) | (ihl / 4) as u8, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
    p.extend_from_slice(&ip_bytes(src));
    p.extend_from_slice(&ip_bytes(dst));
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    fix_ipv4_checksum(&mut p);
    p
}

/// IPv6 packet. Each extension header is `(type, body)` where `body` is the
/// bytes after the Next Header and length/reserved bytes; the length byte is
/// computed (generic: 8-octet units, AH: 4-octet units, Fragment: reserved 0).
pub fn ipv6_packet(
    src: IpAddr,
    dst: IpAddr,
    exts: &[(u8, Vec<u8>)],
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (ty, b)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map(|e| e.0).unwrap_or(proto);
        let total = 2 + b.len();
        let len = match ty {
            44 => {
                assert_eq!(total, 8);
                0
            }
            51 => {
                assert_eq!(total % 4, 0);
                (total / 4 - 2) as u8
            }
            _ => {
                assert_eq!(total % 8, 0);
                (total / 8 - 1) as u8
            }
        };
        body.push(next);
        body.push(len);
        body.extend_from_slice(b);
    }
    body.extend_from_slice(payload);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(exts.first().map(|e| e.0).unwrap_or(proto));
    p.push(64);
    p.extend_from_slice(&ip_bytes(src));
    p.extend_from_slice(&ip_bytes(dst));
    p.extend_from_slice(&body);
    p
}

/// Ethernet frame with optional VLAN tags `(tpid, tci)`.
pub fn ethernet(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A classic pcap file.
pub fn pcap_file(big_endian: bool, nanos: bool, link: u32, pkts: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let mut f = Vec::new();
    w32(&mut f, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    w16(&mut f, 2);
    w16(&mut f, 4);
    w32(&mut f, 0);
    w32(&mut f, 0);
    w32(&mut f, 65535);
    w32(&mut f, link);
    for (sec, frac, data) in pkts {
        w32(&mut f, *sec);
        w32(&mut f, *frac);
        w32(&mut f, data.len() as u32);
        w32(&mut f, data.len() as u32 + 4);
        f.extend_from_slice(data);
    }
    f
}

/// pcapng block builder for one section's byte order.
pub struct Ng {
    pub be: bool,
    pub out: Vec<u8>,
}

impl Ng {
    pub fn new(be: bool) -> Self {
        let mut n = Ng {
            be,
            out: Vec::new(),
        };
        n.shb();
        n
    }
    fn u32b(&self, x: u32) -> [u8; 4] {
        if self.be {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }
    fn u16b(&self, x: u16) -> [u8; 2] {
        if self.be {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }
    pub fn block(&mut self, ty: u32, body: &[u8]) {
        let mut b = body.to_vec();
        while b.len() & 3 != 0 {
            b.push(0);
        }
        let len = 12 + b.len() as u32;
        let (t, l) = (self.u32b(ty), self.u32b(len));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&b);
        self.out.extend_from_slice(&l);
    }
    /// Starts a new section (in this builder's byte order).
    pub fn shb(&mut self) {
        let mut b = self.u32b(0x1a2b_3c4d).to_vec();
        b.extend_from_slice(&self.u16b(1));
        b.extend_from_slice(&self.u16b(0));
        b.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &b);
    }
    pub fn idb(&mut self, link: u16, tsresol: Option<u8>) {
        let mut b = self.u16b(link).to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.u32b(262144));
        // A comment option first, to exercise option walking.
        b.extend_from_slice(&self.u16b(1));
        b.extend_from_slice(&self.u16b(3));
        b.extend_from_slice(b"abc\0");
        if let Some(r) = tsresol {
            b.extend_from_slice(&self.u16b(9));
            b.extend_from_slice(&self.u16b(1));
            b.extend_from_slice(&[r, 0, 0, 0]);
        }
        b.extend_from_slice(&[0, 0, 0, 0]);
        self.block(1, &b);
    }
    pub fn epb(&mut self, iface: u32, ts: u64, data: &[u8]) {
        let mut b = self.u32b(iface).to_vec();
        b.extend_from_slice(&self.u32b((ts >> 32) as u32));
        b.extend_from_slice(&self.u32b(ts as u32));
        b.extend_from_slice(&self.u32b(data.len() as u32));
        b.extend_from_slice(&self.u32b(data.len() as u32));
        b.extend_from_slice(data);
        while b.len() & 3 != 0 {
            b.push(0);
        }
        self.block(6, &b);
    }
    pub fn spb(&mut self, data: &[u8]) {
        let mut b = self.u32b(data.len() as u32).to_vec();
        b.extend_from_slice(data);
        self.block(3, &b);
    }
}
