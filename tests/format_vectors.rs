//! The test vectors of `docs/FORMAT.md`: the code must produce exactly the bytes the doc shows,
//! the bytes must open back to the inputs, and every vector the test uses must appear in the
//! doc (as the first token of a line), so the doc and the code cannot drift apart.

use cofferfs::crypto::chunk::{chunk_aad, chunk_aad_v1};
use cofferfs::crypto::names::{NameCipher, sha256};
use cofferfs::crypto::wrap::{self, FEK_LABEL, VolumeBinding};
use cofferfs::crypto::{ChunkCipher, Fek, KdfParams, Kek, NameKey};
use cofferfs::format::layout::{NONCE_LEN, TAG_LEN};
use cofferfs::format::marker::{StoreLocation, VolumeMarker};
use cofferfs::format::names as fnames;
use cofferfs::format::{FileHeader, FileId, Layout};

const FORMAT_MD: &str = include_str!("../docs/FORMAT.md");

// Inputs (FORMAT.md, "Test vectors").
const PLAINTEXT: &[u8] = b"hello, cofferfs\n";
const NAME: &[u8] = b"report.txt";
const SYMLINK_TARGET: &[u8] = b"../target";
const PASSWORD: &[u8] = b"password";

// Header of the v2 file a0..af.
const HEADER: &[&str] = &[
    "43465301",                         // magic "CFS\x01"
    "0002",                             // format version 2
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // file_id
];
// Associated data of chunk 0 of that file as its last (final) chunk.
const CHUNK0_AAD_FINAL: &[&str] = &[
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // file_id
    "0000000000000000",                 // chunk_index 0
    "01",                               // final flag: last chunk
];
// Chunk 0 holding PLAINTEXT, final, under FEK 00..1f with nonce 00..0b.
const CHUNK0_FINAL: &[&str] = &[
    "000102030405060708090a0b",         // nonce
    "2f67ba77aac9e278e227f1eec38f0b67", // AES-256-GCM ciphertext (16 bytes)
    "02da251f1d8821d20c02d284ee0c1391", // tag
];
// The same chunk sealed as a middle (non-final) chunk: only the flag and the tag change.
const CHUNK0_AAD_MIDDLE: &[&str] = &[
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // file_id
    "0000000000000000",                 // chunk_index 0
    "00",                               // final flag: not the last chunk
];
const CHUNK0_MIDDLE: &[&str] = &[
    "000102030405060708090a0b",         // nonce
    "2f67ba77aac9e278e227f1eec38f0b67", // AES-256-GCM ciphertext (16 bytes)
    "f951a50210e7012f4b9ee1e257df0d68", // tag
];
// Header of the same file had it been written as v1 (files of older volumes).
const HEADER_V1: &[&str] = &[
    "43465301",                         // magic "CFS\x01"
    "0001",                             // format version 1
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // file_id
];
// Associated data of chunk 0 of the v1 file (no final flag).
const CHUNK0_AAD_V1: &[&str] = &[
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // file_id
    "0000000000000000",                 // chunk_index 0
];
// Chunk 0 of the v1 file holding PLAINTEXT under FEK 00..1f with nonce 00..0b.
const CHUNK0_V1: &[&str] = &[
    "000102030405060708090a0b",         // nonce
    "2f67ba77aac9e278e227f1eec38f0b67", // AES-256-GCM ciphertext (16 bytes)
    "0f04ca1f046fd5d0629eea80f346f062", // tag
];
// Associated data of the FEK row of file a0..af.
const FEK_AAD: &[&str] = &[
    "636f6666657266732f76312f66656b",   // "cofferfs/v1/fek"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // file_id
];
// FEK 00..1f wrapped under KEK 40..5f with nonce 60..6b.
const WRAPPED_FEK: &[&str] = &[
    "606162636465666768696a6b", // nonce
    "ac290b06039196a10188733d098b52041f3dfc02032b87191663d1a3b7df19e4", // ciphertext
    "953c3b860aa63485f3e94cf1417ae2b7", // tag
];
// NAME encrypted under name key 80..bf in the directory with id 10..1f.
const ENC_NAME: &[&str] = &[
    "9299dfc2e026f4d6e89d9085ab35b1aa", // SIV tag
    "4c4f387164c5a368e577",             // ciphertext (10 bytes)
];
const ENC_NAME_B64: &str = "kpnfwuAm9NbonZCFqzWxqkxPOHFkxaNo5Xc";
// SYMLINK_TARGET encrypted under the same name key.
const ENC_SYMLINK: &[&str] = &[
    "4154f84f4bd1ef234ebb6eaac9742205", // SIV tag
    "ba31edd13d5f7de240",               // ciphertext (9 bytes)
];
const ENC_SYMLINK_B64: &str = "QVT4T0vR7yNOu26qyXQiBbox7dE9X33iQA";
// On-disk name of 200 'x' in the same directory: its encoded name is 288 characters long.
const LONG_DISK_NAME: &str = "cofferfs.long.U4-FEx4-XtIgkURpmORH1KjTbOVDZnJDkOxqHwPr6Gc";
// Argon2id(PASSWORD, salt 16 × 01, m=1024 KiB, t=1, p=1).
const SLOT_KEY: &[&str] = &["6970484b79ca5fe1561e0d9052ea5c722e26695d1b0ce6da5991f5502031d772"];
// Format v3: associated data of the name-key wrap of volume c0..cf (format 3, chunk_len 4096,
// encrypted names): label ‖ volume_id ‖ format_version ‖ chunk_len ‖ plaintext_names.
const NAME_KEY_AAD_V3: &[&str] = &[
    "636f6666657266732f76332f6e616d652d6b6579", // "cofferfs/v3/name-key"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",         // volume_id
    "0003",                                     // format_version 3
    "00001000",                                 // chunk_len 4096
    "00",                                       // plaintext_names 0
];
// Name key 80..bf wrapped under KEK 40..5f with nonce 60..6b and that associated data.
const WRAPPED_NAME_KEY_V3: &[&str] = &[
    "606162636465666768696a6b", // nonce
    "2ca98b86831116218108f3bd890bd2849fbd7c8283ab079996e35123375f9964", // ciphertext 0..32
    "804e4fbddf6e792e00500a83b783ae854e97dfffc1f31b03ddafa3d0403c720f", // ciphertext 32..64
    "fd88956a87a4062c90864d956a953cde", // tag
];
// Owner digest of the entry "report.txt" (on-disk name ENC_NAME_B64) in directory 10..1f.
const OWNER_INPUT: &[&str] = &[
    "636f6666657266732f76332f6f776e6572", // "cofferfs/v3/owner"
    "101112131415161718191a1b1c1d1e1f",   // dir_id
];
const OWNER: &[&str] = &["49e2af8a06e7af57e0442dee45487737605a08bddd861cd33b245d86391c0b0e"];
// Backing link of the symlink target 3100 × "t": its encoded form is 4155 characters.
const LONG_TARGET_LINK: &str = "cofferfs.longlink.HhyfaOiQZ0djLSGRdPlhjh2m76vGMYX732p_ZLd4nV8";
// Volume marker of volume c0..cf, whose header store is kept elsewhere.
const MARKER: &[&str] = &[
    "43465356",                         // magic "CFSV"
    "0001",                             // format version 1
    "01",                               // store location: elsewhere
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf", // volume_id
];

fn seq(start: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| start + i as u8).collect()
}

fn unhex(fields: &[&str]) -> Vec<u8> {
    let s: String = fields.concat();
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn file_id() -> FileId {
    FileId(seq(0xa0, 16).try_into().unwrap())
}

fn fek() -> Fek {
    Fek::from_slice(&seq(0x00, 32)).unwrap()
}

fn kek_bytes() -> [u8; 32] {
    seq(0x40, 32).try_into().unwrap()
}

fn name_cipher() -> NameCipher {
    NameCipher::new(NameKey::from_slice(&seq(0x80, 64)).unwrap())
}

fn dir_id() -> Vec<u8> {
    seq(0x10, 16)
}

#[test]
fn file_header_vectors() {
    let bytes = FileHeader::new(file_id()).encode();
    assert_eq!(bytes.to_vec(), unhex(HEADER));
    let h = FileHeader::decode(&bytes).unwrap();
    assert_eq!((h.version, h.file_id), (2, file_id()));
    let v1 = FileHeader::decode(&unhex(HEADER_V1)).unwrap();
    assert_eq!((v1.version, v1.file_id), (1, file_id()));
    assert_eq!(v1.encode().to_vec(), unhex(HEADER_V1));
}

#[test]
fn volume_marker_vector() {
    let m = VolumeMarker {
        store: StoreLocation::Elsewhere,
        volume_id: seq(0xc0, 16).try_into().unwrap(),
    };
    assert_eq!(m.encode().to_vec(), unhex(MARKER));
    assert_eq!(VolumeMarker::decode(&unhex(MARKER)).unwrap(), m);
    let mut inside = unhex(MARKER);
    inside[6] = 0;
    assert_eq!(
        VolumeMarker::decode(&inside).unwrap().store,
        StoreLocation::InCipherdir
    );
}

fn cipher(version: u16) -> ChunkCipher {
    ChunkCipher::new(
        &fek(),
        FileHeader {
            version,
            file_id: file_id(),
        },
    )
}

/// PLAINTEXT sealed as chunk 0 with nonce 00..0b.
fn seal(c: &ChunkCipher, is_final: bool) -> Vec<u8> {
    let mut chunk = vec![0u8; NONCE_LEN + PLAINTEXT.len() + TAG_LEN];
    chunk[NONCE_LEN..NONCE_LEN + PLAINTEXT.len()].copy_from_slice(PLAINTEXT);
    let nonce: [u8; NONCE_LEN] = seq(0x00, 12).try_into().unwrap();
    c.seal_in_place(0, is_final, &nonce, &mut chunk);
    chunk
}

fn opens(c: &ChunkCipher, index: u64, is_final: bool, vector: &[&str]) -> bool {
    let mut bytes = unhex(vector);
    let ok = c.open_in_place(index, is_final, &mut bytes).is_ok();
    assert!(!ok || &bytes[NONCE_LEN..NONCE_LEN + PLAINTEXT.len()] == PLAINTEXT);
    ok
}

#[test]
fn v2_chunk_vectors() {
    assert_eq!(
        chunk_aad(&file_id(), 0, true).to_vec(),
        unhex(CHUNK0_AAD_FINAL)
    );
    assert_eq!(
        chunk_aad(&file_id(), 0, false).to_vec(),
        unhex(CHUNK0_AAD_MIDDLE)
    );
    let c = cipher(2);
    assert_eq!(seal(&c, true), unhex(CHUNK0_FINAL));
    assert_eq!(seal(&c, false), unhex(CHUNK0_MIDDLE));
    assert!(opens(&c, 0, true, CHUNK0_FINAL));
    assert!(opens(&c, 0, false, CHUNK0_MIDDLE));
    // Each opens only with the flag it was sealed with, at its own index, in a v2 file.
    assert!(!opens(&c, 0, false, CHUNK0_FINAL));
    assert!(!opens(&c, 0, true, CHUNK0_MIDDLE));
    assert!(!opens(&c, 1, true, CHUNK0_FINAL));
    assert!(!opens(&cipher(1), 0, true, CHUNK0_FINAL));
    // The whole one-chunk v2 file: 22 + 44 bytes, as FORMAT.md says.
    let file = [unhex(HEADER), unhex(CHUNK0_FINAL)].concat();
    assert_eq!(file.len(), 66);
    assert_eq!(Layout::new(4096).unwrap().plain_size_to_cipher_size(16), 66);
}

#[test]
fn v1_chunk_vector() {
    assert_eq!(chunk_aad_v1(&file_id(), 0).to_vec(), unhex(CHUNK0_AAD_V1));
    let c = cipher(1);
    // v1 has no flag: both ways give the same bytes, and the bytes open either way.
    assert_eq!(seal(&c, true), unhex(CHUNK0_V1));
    assert_eq!(seal(&c, false), unhex(CHUNK0_V1));
    assert!(opens(&c, 0, true, CHUNK0_V1));
    assert!(opens(&c, 0, false, CHUNK0_V1));
    // The same bytes at another index do not open: the index is in the associated data.
    assert!(!opens(&c, 1, true, CHUNK0_V1));
    assert!(!opens(&cipher(2), 0, true, CHUNK0_V1));
}

#[test]
fn wrapped_fek_vector() {
    let aad = [FEK_LABEL, &file_id().0].concat();
    assert_eq!(aad, unhex(FEK_AAD));
    let nonce: [u8; NONCE_LEN] = seq(0x60, 12).try_into().unwrap();
    let wrapped = wrap::wrap_with_nonce(&kek_bytes(), &nonce, fek().expose(), &aad);
    assert_eq!(wrapped, unhex(WRAPPED_FEK));
    assert_eq!(wrapped.len(), wrap::WRAPPED_KEY_LEN);

    let kek = Kek::from_slice(&kek_bytes()).unwrap();
    let back = wrap::unwrap_fek(&kek, &unhex(WRAPPED_FEK), &file_id()).unwrap();
    assert_eq!(back.expose(), fek().expose());
    let other_id = FileId([0xa0; 16]);
    assert!(wrap::unwrap_fek(&kek, &unhex(WRAPPED_FEK), &other_id).is_err());
}

#[test]
fn name_vectors() {
    let c = name_cipher();
    let enc = c.encrypt_name(&dir_id(), NAME);
    assert_eq!(enc, unhex(ENC_NAME));
    assert_eq!(fnames::encode(&enc), ENC_NAME_B64);
    let dec = fnames::decode(ENC_NAME_B64).unwrap();
    assert_eq!(c.decrypt_name(&dir_id(), &dec).unwrap(), NAME);
    assert!(c.decrypt_name(&seq(0x11, 16), &dec).is_err());

    let sym = c.encrypt_symlink(SYMLINK_TARGET);
    assert_eq!(sym, unhex(ENC_SYMLINK));
    assert_eq!(fnames::encode(&sym), ENC_SYMLINK_B64);
    assert_eq!(c.decrypt_symlink(&sym).unwrap(), SYMLINK_TARGET);
    assert_eq!(
        fnames::siv_encoded_len_to_plain_len(ENC_SYMLINK_B64.len() as u64),
        SYMLINK_TARGET.len() as u64
    );

    let long = fnames::encode(&c.encrypt_name(&dir_id(), &[b'x'; 200]));
    assert_eq!(long.len(), 288);
    assert!(long.len() > fnames::MAX_NAME_LEN);
    let disk = fnames::long_name(&sha256(long.as_bytes()));
    assert_eq!(disk, LONG_DISK_NAME);
}

#[test]
fn v3_name_key_wrap_vector() {
    let binding = VolumeBinding {
        volume_id: seq(0xc0, 16).try_into().unwrap(),
        format_version: 3,
        chunk_len: 4096,
        plaintext_names: false,
    };
    assert_eq!(binding.aad(), unhex(NAME_KEY_AAD_V3));
    let nonce: [u8; NONCE_LEN] = seq(0x60, 12).try_into().unwrap();
    let wrapped = wrap::wrap_with_nonce(&kek_bytes(), &nonce, &seq(0x80, 64), &binding.aad());
    assert_eq!(wrapped, unhex(WRAPPED_NAME_KEY_V3));
    assert_eq!(wrapped.len(), wrap::WRAPPED_NAME_KEY_LEN);
    let kek = Kek::from_slice(&kek_bytes()).unwrap();
    let nk = wrap::unwrap_name_key_bound(&kek, &wrapped, &binding).unwrap();
    assert_eq!(nk.expose().to_vec(), seq(0x80, 64));
    let flipped = VolumeBinding {
        plaintext_names: true,
        ..binding
    };
    assert!(wrap::unwrap_name_key_bound(&kek, &wrapped, &flipped).is_err());
}

#[test]
fn owner_and_long_target_vectors() {
    let dir: [u8; 16] = dir_id().try_into().unwrap();
    assert_eq!(
        [cofferfs::volume::owners::OWNER_LABEL, &dir[..]].concat(),
        unhex(OWNER_INPUT)
    );
    let owner = cofferfs::volume::owners::entry_owner(&dir, std::ffi::OsStr::new(ENC_NAME_B64));
    assert_eq!(owner.to_vec(), unhex(OWNER));

    let encoded = fnames::encode(&name_cipher().encrypt_symlink(&[b't'; 3100]));
    assert_eq!(encoded.len(), 4155);
    assert!(encoded.len() > fnames::MAX_TARGET_LEN);
    assert_eq!(
        fnames::long_target(&sha256(encoded.as_bytes())),
        LONG_TARGET_LINK
    );
}

#[test]
fn argon2id_vector() {
    let p = KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };
    let key = p.derive(PASSWORD, &[0x01; 16]).unwrap();
    assert_eq!(key.expose().to_vec(), unhex(SLOT_KEY));
}

#[test]
fn worked_sizes() {
    let l = Layout::new(4096).unwrap();
    for (plain, cipher) in [(0, 22), (1, 51), (4095, 4145), (4096, 4146), (4097, 4175)] {
        assert_eq!(l.plain_size_to_cipher_size(plain), cipher);
        assert_eq!(l.cipher_size_to_plain_size(cipher), Ok(plain));
        let row = format!("| {plain} | {cipher} |");
        assert!(FORMAT_MD.contains(&row), "FORMAT.md lacks size row {row}");
    }
    for bad in [1u64, 21, 23, 50, 4147, 4174] {
        assert!(l.cipher_size_to_plain_size(bad).is_err(), "{bad}");
    }
}

// The share payload of FORMAT.md, "Shares".
const SHARE_PAYLOAD: &[&str] = &[
    "4346535348415245",                 // magic "CFSSHARE"
    "0001",                             // payload version 1
    "0001",                             // flags: names
    "00000001",                         // 1 file
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // file_id
    "0002",                             // file format version 2
    "00001000",                         // chunk size 4096
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", // FEK
    "000f",                             // path length 15
    "646f63732f7265706f72742e747874",   // "docs/report.txt"
    "0000000000000010",                 // size 16
    "000000006553f100",                 // mtime 1700000000 s
    "075bcd15",                         // mtime 123456789 ns
];

#[test]
fn share_payload_vector() {
    use cofferfs::share::payload::{self, SharedFile, SharedName};
    let entry = SharedFile {
        file_id: Some(file_id()),
        file_version: 2,
        chunk_len: 4096,
        fek: Some(fek()),
        name: Some(SharedName {
            path: "docs/report.txt".into(),
            size: 16,
            mtime_secs: 1_700_000_000,
            mtime_nsecs: 123_456_789,
        }),
    };
    let bytes = payload::encode(&[entry], true).unwrap();
    assert_eq!(bytes.len(), 107);
    assert_eq!(bytes.to_vec(), unhex(SHARE_PAYLOAD));
    let back = payload::decode(&bytes).unwrap();
    assert_eq!(back[0].file_id, Some(file_id()));
    assert_eq!(back[0].fek.as_ref().unwrap().expose(), fek().expose());
    for field in SHARE_PAYLOAD {
        assert!(
            doc_has_line_starting_with(field),
            "docs/FORMAT.md has no line starting with {field}"
        );
    }
}

/// True when some line of FORMAT.md starts (after indentation) with `token` as a whole word.
fn doc_has_line_starting_with(token: &str) -> bool {
    FORMAT_MD
        .lines()
        .any(|line| line.split_whitespace().next() == Some(token))
}

#[test]
fn every_vector_appears_in_format_md() {
    let groups: &[&[&str]] = &[
        HEADER,
        MARKER,
        CHUNK0_AAD_FINAL,
        CHUNK0_FINAL,
        CHUNK0_AAD_MIDDLE,
        CHUNK0_MIDDLE,
        HEADER_V1,
        CHUNK0_AAD_V1,
        CHUNK0_V1,
        FEK_AAD,
        WRAPPED_FEK,
        ENC_NAME,
        ENC_SYMLINK,
        SLOT_KEY,
        NAME_KEY_AAD_V3,
        WRAPPED_NAME_KEY_V3,
        OWNER_INPUT,
        OWNER,
        &[
            ENC_NAME_B64,
            ENC_SYMLINK_B64,
            LONG_DISK_NAME,
            LONG_TARGET_LINK,
        ],
    ];
    for field in groups.iter().flat_map(|g| g.iter()) {
        assert!(
            doc_has_line_starting_with(field),
            "docs/FORMAT.md has no line starting with {field}"
        );
    }
}
