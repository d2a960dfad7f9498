//! The ciphertext file header (`format::header`): the first 22 bytes of every ciphertext file,
//! read from a cipherdir an attacker may have written. Decoding must never panic, and whatever
//! decodes must encode back to the same bytes (one encoding per header).
#![no_main]

use cofferfs::format::{FileHeader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = FileHeader::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_LEN]);
    }
});
