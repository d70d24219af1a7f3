//! Arbitrary bytes as a file's BOF buffer for the type sniffer: must never
//! panic, must answer the same for the same bytes, and must give only a
//! MIME type of the form `type/subtype`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_mime::sniff::sniff;

fuzz_target!(|data: &[u8]| {
    let a = sniff(data);
    assert_eq!(a, sniff(data));
    if let Some(m) = a {
        assert!(m.contains('/') && !m.contains(char::is_whitespace), "{m}");
    }
    // The BOF buffer of a file shorter than the limit is a prefix of a
    // longer one's: every prefix must be handled too.
    if let Some(n) = data.first() {
        let _ = sniff(&data[..usize::from(*n).min(data.len())]);
    }
});
