//! Fuzzes mailtap-wire's capture-file reader (pcap, pcapng, gzip): arbitrary
//! bytes must produce packets and/or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_wire::{Block, CaptureReader};

fuzz_target!(|data: &[u8]| {
    let cursor = std::io::Cursor::new(data.to_vec());
    let Ok(mut reader) = CaptureReader::from_reader("fuzz".into(), Box::new(cursor), None) else { return };
    let mut block = Block::with_capacity(4096);
    let mut rounds = 0usize;
    loop {
        block.clear();
        let res = reader.fill(&mut block);
        for i in 0..block.packets.len() {
            let p = block.packets[i];
            assert_eq!(block.packet(i).len(), p.len as usize);
        }
        match res {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        rounds += 1;
        // Every round consumes at least one packet record of >= 16 bytes
        // (or the decompressed stream, bounded by gzip's ratio).
        assert!(rounds <= 1 + data.len().saturating_mul(1100));
    }
});
