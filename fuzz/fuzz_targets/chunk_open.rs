//! Opening a content chunk (`crypto::chunk`) under a fixed FEK: the bytes come from an
//! untrusted ciphertext file. Input: one flag byte (bit 0: format v2, bit 1: expected final
//! chunk), an 8-byte chunk index, then the on-disk chunk. Opening must never panic and must
//! accept only authentic chunks: whatever opens must be exactly what sealing its plaintext
//! with its own nonce gives. The same bytes are then sealed as plaintext and must open at
//! their index only, and fail with any one bit flipped.
#![no_main]

use cofferfs::crypto::{ChunkCipher, Fek};
use cofferfs::format::layout::{NONCE_LEN, TAG_LEN};
use cofferfs::format::{FileHeader, FileId};
use libfuzzer_sys::fuzz_target;

fn cipher(version: u16) -> ChunkCipher {
    let fek = Fek::from_slice(&[0x42; 32]).expect("32 bytes");
    let header = FileHeader {
        version,
        file_id: FileId([0xa5; 16]),
    };
    ChunkCipher::new(&fek, header)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let version = if data[0] & 1 == 1 { 2 } else { 1 };
    let is_final = data[0] & 2 != 0;
    let index = u64::from_be_bytes(data[1..9].try_into().expect("8 bytes"));
    let chunk = &data[9..];
    let c = cipher(version);

    let mut buf = chunk.to_vec();
    if c.open_in_place(index, is_final, &mut buf).is_ok() {
        let nonce: [u8; NONCE_LEN] = chunk[..NONCE_LEN].try_into().expect("opened");
        let mut again = buf.clone();
        c.seal_in_place(index, is_final, &nonce, &mut again);
        assert_eq!(
            again, chunk,
            "a chunk opened that is not the seal of its plaintext"
        );
    }

    // Round trip with the input as plaintext (bounded, as chunks are).
    let plain = &chunk[..chunk.len().min(1 << 16)];
    let nonce = [data[0]; NONCE_LEN];
    let mut sealed = vec![0u8; NONCE_LEN + plain.len() + TAG_LEN];
    sealed[NONCE_LEN..NONCE_LEN + plain.len()].copy_from_slice(plain);
    c.seal_in_place(index, is_final, &nonce, &mut sealed);
    let mut opened = sealed.clone();
    c.open_in_place(index, is_final, &mut opened)
        .expect("a sealed chunk opens");
    assert_eq!(&opened[NONCE_LEN..NONCE_LEN + plain.len()], plain);
    let mut moved = sealed.clone();
    assert!(
        c.open_in_place(index.wrapping_add(1), is_final, &mut moved)
            .is_err()
    );
    if version == 2 {
        let mut other_flag = sealed.clone();
        assert!(c.open_in_place(index, !is_final, &mut other_flag).is_err());
    }
    let bit = usize::from(data[0]) * 8 + usize::from(data[1] & 7);
    let mut flipped = sealed;
    let at = bit / 8 % flipped.len();
    flipped[at] ^= 1 << (bit % 8);
    assert!(c.open_in_place(index, is_final, &mut flipped).is_err());
});
