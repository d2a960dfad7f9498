//! Chunk framing (`format::layout`): the ciphertext size comes from `stat` of an untrusted file
//! (an attacker can make a sparse file of any size), the offsets from requests. No conversion
//! may panic or overflow; a size that maps to a plaintext size maps back to itself (but the
//! empty file of 0 bytes, a create cut before its header), and the last chunk of that plaintext
//! ends exactly at the end of the file.
#![no_main]

use cofferfs::format::Layout;
use cofferfs::format::layout::CHUNK_OVERHEAD_LEN;
use libfuzzer_sys::fuzz_target;

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    let end = data.len().min(at + 8);
    if at < end {
        b[..end - at].copy_from_slice(&data[at..end]);
    }
    u64::from_be_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let raw_len = u64_at(data, 0);
    let valid = raw_len.is_power_of_two() && (4096..=1 << 20).contains(&raw_len);
    assert_eq!(Layout::new(raw_len).is_ok(), valid);
    let shift = 12 + u32::from(data.first().copied().unwrap_or(0) % 9);
    let layout = Layout::new(1 << shift).expect("a valid chunk size");
    let cipher_size = u64_at(data, 8);

    match layout.cipher_size_to_plain_size(cipher_size) {
        Ok(plain) => {
            assert!(plain <= cipher_size);
            // A 0-byte file (create interrupted before its header) reads as empty.
            let cipher_of_plain = layout.plain_size_to_cipher_size(plain);
            assert!(cipher_of_plain == cipher_size || (cipher_size == 0 && plain == 0));
            assert_eq!(layout.cipher_size_to_plain_size_lenient(cipher_size), plain);
            if let Some(last) = layout.last_chunk_index(plain) {
                let len = layout.chunk_plain_len(last, plain) as u64;
                assert!((1..=layout.chunk_len() as u64).contains(&len));
                let end = layout.chunk_index_to_cipher_off(last) + len + CHUNK_OVERHEAD_LEN;
                assert_eq!(end, cipher_size);
                assert_eq!(layout.chunk_plain_len(last + 1, plain), 0);
            }
        }
        Err(_) => {
            let lenient = layout.cipher_size_to_plain_size_lenient(cipher_size);
            assert!(lenient <= cipher_size);
            if let Some(last) = layout.last_chunk_index(lenient) {
                assert!(layout.chunk_index_to_cipher_off(last) < cipher_size);
            }
        }
    }

    // A read or write of up to 64 KiB at any offset.
    let plain_off = u64_at(data, 16);
    let len = (u64_at(data, 24) % (1 << 16)) as usize;
    let mut pos = plain_off;
    let mut total = 0usize;
    for s in layout.spans(plain_off, len) {
        assert_eq!(s.chunk_index, layout.plain_off_to_chunk_index(pos));
        assert!(s.len >= 1 && s.offset_in_chunk + s.len <= layout.chunk_len());
        pos += s.len as u64;
        total += s.len;
    }
    assert_eq!(total as u64, (len as u64).min(u64::MAX - plain_off));
});
