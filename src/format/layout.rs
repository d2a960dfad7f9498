//! Chunk geometry: every conversion between plaintext and ciphertext offsets and sizes.
//!
//! ```text
//! ciphertext file = header (22) ‖ chunk 0 ‖ chunk 1 ‖ … ‖ chunk n-1
//! chunk i         = nonce (12) ‖ AES-256-GCM(ciphertext, chunk_len bytes or fewer) ‖ tag (16)
//! ```
//! Every chunk but the last holds exactly `chunk_len` plaintext bytes; the last holds 1 to
//! `chunk_len`. A file of 0 plaintext bytes is the header alone. Sizes map both ways without any
//! cryptography, so `stat` never decrypts. Which chunk is the last one follows from the size
//! alone too ([`Layout::last_chunk_index`]): format v2 binds that into the chunk's associated
//! data, so a size changed behind cofferfs's back makes the new last chunk fail. Imports std
//! only.

use super::{FormatError, HEADER_LEN};

/// Length of the random AES-GCM nonce stored in front of each chunk.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag stored after each chunk.
pub const TAG_LEN: usize = 16;
/// Bytes a chunk adds to its plaintext.
pub const CHUNK_OVERHEAD_LEN: u64 = (NONCE_LEN + TAG_LEN) as u64;
/// Smallest allowed plaintext chunk length.
pub const MIN_CHUNK_LEN: u32 = 4096;
/// Largest allowed plaintext chunk length.
pub const MAX_CHUNK_LEN: u32 = 1 << 20;
/// Chunk length of a new volume unless `init --chunk-size` says otherwise (see FORMAT.md for
/// the measurements behind it).
pub const DEFAULT_CHUNK_LEN: u32 = 4096;

const HEADER_LEN_U64: u64 = HEADER_LEN as u64;

/// The chunk geometry of one volume, fixed at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    chunk_len: u64,
}

/// The part of one chunk that a plaintext byte range touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    /// Index of the chunk in the file.
    pub chunk_index: u64,
    /// Offset of the range inside the chunk's plaintext.
    pub offset_in_chunk: usize,
    /// Number of bytes of the range in this chunk.
    pub len: usize,
}

impl Layout {
    /// Validates a chunk length: a power of two from 4 KiB to 1 MiB.
    pub fn new(chunk_len: u64) -> Result<Self, FormatError> {
        let ok = chunk_len.is_power_of_two()
            && (u64::from(MIN_CHUNK_LEN)..=u64::from(MAX_CHUNK_LEN)).contains(&chunk_len);
        if !ok {
            return Err(FormatError::InvalidChunkSize(chunk_len));
        }
        Ok(Layout { chunk_len })
    }

    /// Plaintext bytes in a full chunk.
    pub fn chunk_len(&self) -> usize {
        self.chunk_len as usize
    }

    /// On-disk bytes of a full chunk.
    pub fn chunk_cipher_len(&self) -> u64 {
        self.chunk_len + CHUNK_OVERHEAD_LEN
    }

    /// Index of the chunk that holds plaintext byte `plain_off`.
    pub fn plain_off_to_chunk_index(&self, plain_off: u64) -> u64 {
        plain_off / self.chunk_len
    }

    /// Offset in the ciphertext file where chunk `chunk_index` starts.
    pub fn chunk_index_to_cipher_off(&self, chunk_index: u64) -> u64 {
        HEADER_LEN_U64 + chunk_index * self.chunk_cipher_len()
    }

    /// Number of chunks a file of `plain_size` bytes has.
    pub fn chunk_count(&self, plain_size: u64) -> u64 {
        plain_size.div_ceil(self.chunk_len)
    }

    /// Index of the last chunk of a file of `plain_size` bytes; `None` for an empty file. In
    /// format v2 this chunk, and only this one, is sealed with the final flag set.
    pub fn last_chunk_index(&self, plain_size: u64) -> Option<u64> {
        self.chunk_count(plain_size).checked_sub(1)
    }

    /// Plaintext length of chunk `chunk_index` in a file of `plain_size` bytes (0 past the end).
    pub fn chunk_plain_len(&self, chunk_index: u64, plain_size: u64) -> usize {
        let start = chunk_index.saturating_mul(self.chunk_len);
        plain_size.saturating_sub(start).min(self.chunk_len) as usize
    }

    /// On-disk size of a file holding `plain_size` plaintext bytes.
    pub fn plain_size_to_cipher_size(&self, plain_size: u64) -> u64 {
        let full = plain_size / self.chunk_len;
        let rem = plain_size % self.chunk_len;
        let tail = if rem == 0 {
            0
        } else {
            rem + CHUNK_OVERHEAD_LEN
        };
        HEADER_LEN_U64 + full * self.chunk_cipher_len() + tail
    }

    /// Plaintext size of a ciphertext file of `cipher_size` bytes, or an error if no plaintext
    /// size maps to it (a file cut inside a header or inside a chunk's nonce and tag). A 0-byte
    /// file is a file whose header was never written and reads as empty.
    pub fn cipher_size_to_plain_size(&self, cipher_size: u64) -> Result<u64, FormatError> {
        if cipher_size == 0 {
            return Ok(0);
        }
        let body = cipher_size
            .checked_sub(HEADER_LEN_U64)
            .ok_or(FormatError::InvalidCipherSize(cipher_size))?;
        let full = body / self.chunk_cipher_len();
        let rem = body % self.chunk_cipher_len();
        if rem != 0 && rem <= CHUNK_OVERHEAD_LEN {
            return Err(FormatError::InvalidCipherSize(cipher_size));
        }
        Ok(full * self.chunk_len + rem.saturating_sub(CHUNK_OVERHEAD_LEN))
    }

    /// The size `stat` reports: exact for valid sizes; for an invalid size (a damaged file) the
    /// bytes of whole chunks, so `stat` still works and reads report the damage as EIO.
    pub fn cipher_size_to_plain_size_lenient(&self, cipher_size: u64) -> u64 {
        self.cipher_size_to_plain_size(cipher_size)
            .unwrap_or_else(|_| {
                let body = cipher_size.saturating_sub(HEADER_LEN_U64);
                body / self.chunk_cipher_len() * self.chunk_len
            })
    }

    /// Splits the plaintext range `[plain_off, plain_off + len)` into per-chunk spans, in order.
    pub fn spans(&self, plain_off: u64, len: usize) -> impl Iterator<Item = ChunkSpan> + use<> {
        let chunk_len = self.chunk_len;
        let end = plain_off.saturating_add(len as u64);
        let mut pos = plain_off;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let chunk_index = pos / chunk_len;
            let offset_in_chunk = pos % chunk_len;
            let n = (chunk_len - offset_in_chunk).min(end - pos);
            pos += n;
            Some(ChunkSpan {
                chunk_index,
                offset_in_chunk: offset_in_chunk as usize,
                len: n as usize,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l4k() -> Layout {
        Layout::new(4096).unwrap()
    }

    #[test]
    fn chunk_len_must_be_power_of_two_in_range() {
        for ok in [4096u64, 8192, 65536, 1 << 20] {
            assert!(Layout::new(ok).is_ok(), "{ok}");
        }
        for bad in [0u64, 1, 2048, 4095, 4097, 12288, 1 << 21] {
            assert_eq!(
                Layout::new(bad),
                Err(FormatError::InvalidChunkSize(bad)),
                "{bad}"
            );
        }
    }

    #[test]
    fn worked_sizes_match_format_doc() {
        let l = l4k();
        let table = [
            (0u64, 22u64),
            (1, 51),
            (4095, 4145),
            (4096, 4146),
            (4097, 4175),
        ];
        for (plain, cipher) in table {
            assert_eq!(l.plain_size_to_cipher_size(plain), cipher, "plain {plain}");
            assert_eq!(
                l.cipher_size_to_plain_size(cipher),
                Ok(plain),
                "cipher {cipher}"
            );
        }
    }

    #[test]
    fn impossible_cipher_sizes_are_rejected() {
        let l = l4k();
        for bad in [1u64, 21, 23, 22 + 28, 4146 + 1, 4146 + 28] {
            assert_eq!(
                l.cipher_size_to_plain_size(bad),
                Err(FormatError::InvalidCipherSize(bad))
            );
        }
        assert_eq!(l.cipher_size_to_plain_size(0), Ok(0));
        assert_eq!(l.cipher_size_to_plain_size_lenient(4146 + 5), 4096);
    }

    #[test]
    fn exhaustive_small_sizes_round_trip_and_are_monotonic() {
        for chunk in [4096u64, 8192] {
            let l = Layout::new(chunk).unwrap();
            let mut last = 0;
            for plain in 0..(3 * chunk + 100) {
                let cipher = l.plain_size_to_cipher_size(plain);
                assert!(plain == 0 || cipher > last, "not monotonic at {plain}");
                last = cipher;
                assert_eq!(l.cipher_size_to_plain_size(cipher), Ok(plain));
            }
            // Every cipher size either maps to a plain size that maps back, or is invalid.
            for cipher in 1..(3 * l.chunk_cipher_len() + 100) {
                if let Ok(plain) = l.cipher_size_to_plain_size(cipher) {
                    assert_eq!(l.plain_size_to_cipher_size(plain), cipher);
                }
            }
        }
    }

    #[test]
    fn spans_split_at_chunk_boundaries() {
        let l = l4k();
        let spans: Vec<_> = l.spans(4000, 5000).collect();
        assert_eq!(
            spans,
            vec![
                ChunkSpan {
                    chunk_index: 0,
                    offset_in_chunk: 4000,
                    len: 96
                },
                ChunkSpan {
                    chunk_index: 1,
                    offset_in_chunk: 0,
                    len: 4096
                },
                ChunkSpan {
                    chunk_index: 2,
                    offset_in_chunk: 0,
                    len: 808
                },
            ]
        );
        assert_eq!(l.spans(10, 0).count(), 0);
        assert_eq!(l.chunk_plain_len(2, 8193), 1);
        assert_eq!(l.chunk_plain_len(3, 8193), 0);
        assert_eq!(l.chunk_count(8193), 3);
    }

    #[test]
    fn last_chunk_index_follows_the_size() {
        let l = l4k();
        for (size, last) in [
            (0u64, None),
            (1, Some(0)),
            (4095, Some(0)),
            (4096, Some(0)),
            (4097, Some(1)),
            (8192, Some(1)),
            (8193, Some(2)),
        ] {
            assert_eq!(l.last_chunk_index(size), last, "size {size}");
        }
    }

    proptest! {
        #[test]
        fn sizes_round_trip(plain in 0u64..(1 << 40), shift in 12u32..=20) {
            let l = Layout::new(1 << shift).unwrap();
            let cipher = l.plain_size_to_cipher_size(plain);
            prop_assert_eq!(l.cipher_size_to_plain_size(cipher), Ok(plain));
            prop_assert!(l.plain_size_to_cipher_size(plain + 1) > cipher);
        }

        #[test]
        fn spans_cover_range_exactly(off in 0u64..(1 << 30), len in 0usize..100_000) {
            let l = l4k();
            let mut pos = off;
            for s in l.spans(off, len) {
                prop_assert_eq!(s.chunk_index * 4096 + s.offset_in_chunk as u64, pos);
                prop_assert!(s.len > 0 && s.offset_in_chunk + s.len <= 4096);
                pos += s.len as u64;
            }
            prop_assert_eq!(pos, off + len as u64);
        }
    }
}
