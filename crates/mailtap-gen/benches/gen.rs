//! Generation throughput (pcap bytes per second) into `std::io::sink()`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mailtap_gen::{generate, GenConfig};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gen");
    g.sample_size(10);
    for (name, conc) in [("conc16", 16usize), ("conc10k", 10_000)] {
        let cfg = GenConfig {
            target_bytes: Some(64 << 20),
            concurrency: conc,
            ..GenConfig::default()
        };
        // measure the exact output size once so throughput is in real bytes
        let bytes = generate(&cfg, std::io::sink()).unwrap().bytes;
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(name, |b| {
            b.iter(|| generate(&cfg, std::io::sink()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
