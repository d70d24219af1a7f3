//! Decode and flow-hash throughput on a typical Ethernet/IPv4/TCP data packet.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mailtap_wire::{decode, flow_hash, Decoded, LinkType};

/// A 1514-byte Ethernet frame: IPv4 (no options), TCP with timestamps option
/// (32-byte header), 1448 bytes of SMTP DATA payload. Checksums are valid.
fn data_packet() -> Vec<u8> {
    let payload = vec![b'x'; 1448];
    let mut tcp = vec![0u8; 32];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&25u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&123_456u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&654_321u32.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = 0x18;
    tcp[14..16].copy_from_slice(&502u16.to_be_bytes());
    tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    tcp.extend_from_slice(&payload);
    let (src, dst) = ([10, 0, 0, 1], [192, 168, 1, 25]);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let ck = !fold(sum(&ip, 0));
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    let mut pseudo = src.to_vec();
    pseudo.extend_from_slice(&dst);
    let ck = !fold(sum(&tcp, sum(&pseudo, 6 + tcp.len() as u64)));
    tcp[16..18].copy_from_slice(&ck.to_be_bytes());
    let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

fn sum(d: &[u8], mut acc: u64) -> u64 {
    for c in d.chunks(2) {
        acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut a: u64) -> u16 {
    while a >> 16 != 0 {
        a = (a & 0xffff) + (a >> 16);
    }
    a as u16
}

fn bench(c: &mut Criterion) {
    let pkt = data_packet();
    assert!(matches!(
        decode(LinkType::Ethernet, &pkt, true),
        Ok(Decoded::Tcp(_))
    ));
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("eth_ipv4_tcp_1514", |b| {
        b.iter(|| decode(LinkType::Ethernet, black_box(&pkt), false))
    });
    g.bench_function("eth_ipv4_tcp_1514_verify_checksums", |b| {
        b.iter(|| decode(LinkType::Ethernet, black_box(&pkt), true))
    });
    let ack = &pkt[..66];
    let mut ack = ack.to_vec();
    ack[16..18].copy_from_slice(&52u16.to_be_bytes());
    g.bench_function("eth_ipv4_tcp_66_ack", |b| {
        b.iter(|| decode(LinkType::Ethernet, black_box(&ack), false))
    });
    g.finish();

    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let z = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 25));
    let a6: IpAddr = "2001:db8::1".parse().unwrap();
    let z6: IpAddr = "2001:db8::25".parse().unwrap();
    let mut g = c.benchmark_group("flow_hash");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4", |b| {
        b.iter(|| flow_hash(black_box(a), black_box(40000), black_box(z), black_box(25)))
    });
    g.bench_function("ipv6", |b| {
        b.iter(|| {
            flow_hash(
                black_box(a6),
                black_box(40000),
                black_box(z6),
                black_box(25),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
