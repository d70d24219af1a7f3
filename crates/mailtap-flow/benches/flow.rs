//! Flow lookup and reassembly costs per segment.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mailtap_core::{ConnCtx, ConnId, Output, TcpAnalyzer, Timestamp};
use mailtap_flow::reassembly::{MemBudget, Stream};
use mailtap_flow::{
    AnalyzerFactory, Detect, FlowConfig, FlowTable, LocalNets, Segment, UidGenerator,
};
use std::net::IpAddr;

struct Sink;
impl TcpAnalyzer for Sink {
    fn deliver(&mut self, _: &mut ConnCtx<'_>, _: bool, d: &[u8]) {
        black_box(d);
    }
    fn gap(&mut self, _: &mut ConnCtx<'_>, _: bool, _: u64) {}
    fn done(&mut self, _: &mut ConnCtx<'_>) {}
}
struct F;
impl AnalyzerFactory for F {
    type Analyzer = Sink;
    fn by_port(&self, _: &ConnId) -> Option<Sink> {
        Some(Sink)
    }
    fn detect(&self, _: &ConnId, _: &[u8], _: &[u8]) -> Detect<Sink> {
        Detect::GiveUp
    }
}

fn bench(c: &mut Criterion) {
    let payload = vec![b'x'; 1448];
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Elements(1));

    // 10k live connections, data segments round-robin across them.
    let flows = 10_000u32;
    g.bench_function("table_process_10k_flows", |b| {
        let mut t = FlowTable::new(
            FlowConfig::default(),
            F,
            UidGenerator::new(""),
            LocalNets::default(),
        );
        let mut out = Output::new(false);
        let seqs: Vec<u32> = vec![1; flows as usize];
        let mut seqs = seqs;
        for i in 0..flows {
            let s = seg(i, 0x02, 0, &[]);
            t.process(&s, &mut out);
        }
        let mut i = 0u32;
        b.iter(|| {
            let k = i % flows;
            let s = seg(k, 0x18, seqs[k as usize], &payload);
            seqs[k as usize] = seqs[k as usize].wrapping_add(payload.len() as u32);
            t.process(&s, &mut out);
            i = i.wrapping_add(1);
            if out.records.len() > 1024 {
                out.records.clear();
            }
        })
    });

    g.bench_function("reassembly_in_order", |b| {
        let mut s = Stream::default();
        let mut budget = MemBudget::new(1 << 30);
        let mut sink = |c: mailtap_flow::reassembly::Chunk<'_>| {
            black_box(c);
        };
        s.segment(0, true, false, &[], 1 << 20, &mut budget, &mut sink);
        let mut seq = 1u32;
        b.iter(|| {
            s.segment(seq, false, false, &payload, 1 << 20, &mut budget, &mut sink);
            seq = seq.wrapping_add(payload.len() as u32);
        })
    });

    g.bench_function("reassembly_swapped_pairs", |b| {
        let mut s = Stream::default();
        let mut budget = MemBudget::new(1 << 30);
        let mut sink = |c: mailtap_flow::reassembly::Chunk<'_>| {
            black_box(c);
        };
        s.segment(0, true, false, &[], 1 << 20, &mut budget, &mut sink);
        let mut seq = 1u32;
        let n = payload.len() as u32;
        b.iter(|| {
            // Every pair of segments arrives swapped: one buffered copy each.
            s.segment(
                seq.wrapping_add(n),
                false,
                false,
                &payload,
                1 << 20,
                &mut budget,
                &mut sink,
            );
            s.segment(seq, false, false, &payload, 1 << 20, &mut budget, &mut sink);
            seq = seq.wrapping_add(2 * n);
        })
    });
    g.finish();
}

fn seg(i: u32, flags: u8, seq: u32, payload: &[u8]) -> Segment<'_> {
    Segment {
        ts: Timestamp(1_000_000_000),
        src: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
        dst: IpAddr::from([192, 0, 2, 25]),
        src_port: 1024 + (i % 50_000) as u16,
        dst_port: 25,
        seq,
        ack: 1,
        flags,
        window: 1000,
        ip_len: 40 + payload.len() as u32,
        payload,
        bad_checksum: false,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
