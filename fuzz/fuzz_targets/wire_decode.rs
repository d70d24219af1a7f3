//! Fuzzes mailtap-wire's packet decoder and defragmenter: no input may panic.
//! The first byte selects the link type and checksum verification; the rest
//! is split into packets at 0xfe bytes so fragments can be combined.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_core::Timestamp;
use mailtap_wire::{decode, flow_hash, DefragConfig, Decoded, Defragmenter, LinkType};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let link = match sel % 5 {
        0 => LinkType::Ethernet,
        1 => LinkType::Raw,
        2 => LinkType::LinuxSll,
        3 => LinkType::LinuxSll2,
        _ => LinkType::Null,
    };
    let verify = sel & 0x80 != 0;
    let mut defrag = Defragmenter::new(DefragConfig { max_datagrams: 8, max_bytes: 1 << 16, ..DefragConfig::default() });
    let mut out = Vec::new();
    for (i, pkt) in rest.split(|&b| b == 0xfe).enumerate() {
        match decode(link, pkt, verify) {
            Ok(Decoded::Tcp(t)) => {
                let h = flow_hash(t.src, t.src_port, t.dst, t.dst_port);
                assert_eq!(h, flow_hash(t.dst, t.dst_port, t.src, t.src_port));
                assert!(t.payload.len() <= pkt.len());
            }
            Ok(Decoded::Fragment(f)) => {
                if defrag.push(Timestamp(i as i64), &f, &mut out) {
                    assert!(out.len() <= 65535 + 40);
                    let _ = decode(LinkType::Raw, &out, verify);
                }
            }
            Ok(Decoded::Other) => {}
            Err(e) => {
                assert!(!e.name().is_empty());
            }
        }
    }
    defrag.expire(Timestamp(i64::MAX));
    assert_eq!(defrag.counters().pending_datagrams, 0);
});
