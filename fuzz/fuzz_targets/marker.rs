//! The volume marker (`format::marker`, the file `cofferfs.volume`), read from an untrusted
//! cipherdir before any key is known. Decoding must never panic, and a marker that decodes must
//! be exactly the bytes it encodes to.
#![no_main]

use cofferfs::format::marker::VolumeMarker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = VolumeMarker::decode(data) {
        assert_eq!(&m.encode()[..], data);
    }
});
