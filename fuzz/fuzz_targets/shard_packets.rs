//! Arbitrary bytes as a sequence of packets through a whole shard: decode,
//! flow table, TCP reassembly and the SMTP analyzer. Each packet is a
//! 2-byte length then that many bytes of an Ethernet frame. Must never
//! panic and must keep the table within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_core::{Output, Timestamp};
use mailtap_engine::MailAnalyzers;
use mailtap_flow::{FlowConfig, FlowTable, LocalNets, Segment, UidGenerator};
use mailtap_smtp::SmtpConfig;
use mailtap_wire::decode::{decode, Decoded};
use mailtap_wire::LinkType;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let cfg = FlowConfig { max_flows: 8, reassembly_stream_limit: 4096, reassembly_memory: 16384, ..FlowConfig::default() };
    let factory = MailAnalyzers { smtp: Arc::new(SmtpConfig::default()), ..MailAnalyzers::with_defaults() };
    let mut t = FlowTable::new(cfg, factory, UidGenerator::new(""), LocalNets::default());
    let mut out = Output::new(true);
    let mut rest = data;
    let mut ts = 1_000_000_000i64;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let pkt = &rest[2..2 + n];
        rest = &rest[2 + n..];
        ts += 1_000_000;
        if let Ok(Decoded::Tcp(p)) = decode(LinkType::Ethernet, pkt, false) {
            let seg = Segment {
                ts: Timestamp(ts),
                src: p.src,
                dst: p.dst,
                src_port: p.src_port,
                dst_port: p.dst_port,
                seq: p.seq,
                ack: p.ack,
                flags: p.flags.bits(),
                window: p.window,
                ip_len: p.ip_len,
                payload: p.payload,
                bad_checksum: false,
            };
            t.process(&seg, &mut out);
            assert!(t.len() <= 8);
            assert!(t.reassembly_bytes() <= 16384);
        }
        t.advance(Timestamp(ts), &mut out);
        out.records.clear();
    }
    t.finish(&mut out);
});
