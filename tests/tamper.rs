//! Tampering with ciphertext or the header store must yield a specific error, never wrong
//! bytes: each test checks *which* error comes back. Format v2 files also detect a cut at a
//! chunk boundary and appended chunks (the final flag); v1 files do not (a documented residual).

mod common;

use std::os::unix::fs::FileExt;

use std::path::Path;

use cofferfs::format::HEADER_LEN;
use cofferfs::keystore::KeystoreError;
use cofferfs::volume::reencrypt::resolve;
use cofferfs::volume::{Volume, VolumeError};
use common::{FIXTURE_PASSWORD, PASSWORD, TestVolume, fixture_copy, rw};

const C: usize = 4096;
const CC: u64 = 4096 + 28;

fn chunk_off(i: u64) -> u64 {
    HEADER_LEN as u64 + i * CC
}

/// A volume with file "a" of three full chunks plus a partial one, and file "b".
fn setup() -> TestVolume {
    let tv = TestVolume::new();
    let vol = tv.open();
    for (name, seed) in [("a", 1u8), ("b", 2u8)] {
        let f = vol.create_file(rw(&tv.blob(name))).unwrap();
        f.write_at(&vec![seed; 3 * C + 500], 0).unwrap();
    }
    tv
}

fn read_chunk(vol: &Volume, tv: &TestVolume, name: &str, i: u64) -> Result<Vec<u8>, VolumeError> {
    let f = vol.open_file(rw(&tv.blob(name)))?;
    let mut buf = vec![0u8; C];
    let n = f.read_at(&mut buf, i * C as u64)?;
    buf.truncate(n);
    Ok(buf)
}

fn flip(tv: &TestVolume, name: &str, off: u64) {
    let f = rw(&tv.blob(name));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], off).unwrap();
}

fn assert_corrupt_chunk(r: Result<Vec<u8>, VolumeError>, want_index: u64) {
    match r {
        Err(VolumeError::CorruptChunk { chunk_index, .. }) => assert_eq!(chunk_index, want_index),
        other => panic!("expected CorruptChunk({want_index}), got {other:?}"),
    }
}

#[test]
fn flipped_ciphertext_byte_fails_only_that_chunk() {
    let tv = setup();
    flip(&tv, "a", chunk_off(1) + 12 + 100);
    let vol = tv.open();
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 1), 1);
    assert_eq!(read_chunk(&vol, &tv, "a", 0).unwrap(), vec![1u8; C]);
    assert_eq!(read_chunk(&vol, &tv, "a", 2).unwrap(), vec![1u8; C]);
}

#[test]
fn flipped_tag_and_nonce_fail() {
    let tv = setup();
    flip(&tv, "a", chunk_off(1) - 1); // last tag byte of chunk 0
    flip(&tv, "a", chunk_off(2)); // first nonce byte of chunk 2
    let vol = tv.open();
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 0), 0);
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 2), 2);
    assert!(read_chunk(&vol, &tv, "a", 1).is_ok());
}

#[test]
fn chunks_swapped_between_positions_fail() {
    let tv = setup();
    let f = rw(&tv.blob("a"));
    let mut c0 = vec![0u8; CC as usize];
    let mut c1 = vec![0u8; CC as usize];
    f.read_exact_at(&mut c0, chunk_off(0)).unwrap();
    f.read_exact_at(&mut c1, chunk_off(1)).unwrap();
    f.write_all_at(&c1, chunk_off(0)).unwrap();
    f.write_all_at(&c0, chunk_off(1)).unwrap();
    let vol = tv.open();
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 0), 0);
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 1), 1);
}

#[test]
fn chunk_copied_from_another_file_fails() {
    let tv = setup();
    let mut c = vec![0u8; CC as usize];
    rw(&tv.blob("b"))
        .read_exact_at(&mut c, chunk_off(1))
        .unwrap();
    rw(&tv.blob("a")).write_all_at(&c, chunk_off(1)).unwrap();
    let vol = tv.open();
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 1), 1);
}

#[test]
fn header_changes_are_detected() {
    let tv = setup();
    // A flipped file_id byte points at no key row.
    flip(&tv, "a", 10);
    // A header copied from b makes a's chunks fail under b's key.
    let mut hb = [0u8; HEADER_LEN];
    rw(&tv.blob("b")).read_exact_at(&mut hb, 0).unwrap();
    std::fs::copy(tv.blob("a"), tv.blob("a2")).unwrap();
    rw(&tv.blob("a2")).write_all_at(&hb, 0).unwrap();
    // A wrong magic is not a cofferfs file.
    std::fs::copy(tv.blob("b"), tv.blob("b2")).unwrap();
    flip(&tv, "b2", 0);
    let vol = tv.open();
    assert!(matches!(
        read_chunk(&vol, &tv, "a", 0),
        Err(VolumeError::Keystore(KeystoreError::MissingKey(_)))
    ));
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a2", 0), 0);
    assert!(matches!(
        read_chunk(&vol, &tv, "b2", 0),
        Err(VolumeError::CorruptFile { .. })
    ));
}

fn with_db(tv: &TestVolume, sql: &str) {
    let conn = rusqlite::Connection::open(tv.cipherdir().join("cofferfs.db")).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn altered_or_deleted_key_rows_are_reported() {
    let tv = setup();
    let (id_a, id_b) = {
        let vol = tv.open();
        let a = vol.open_file(rw(&tv.blob("a"))).unwrap().file_id().unwrap();
        let b = vol.open_file(rw(&tv.blob("b"))).unwrap().file_id().unwrap();
        (a, b)
    };
    with_db(
        &tv,
        &format!(
            "UPDATE file_keys SET wrapped_fek = substr(wrapped_fek, 1, 20) || x'00' || substr(wrapped_fek, 22) WHERE file_id = x'{id_a}';
             DELETE FROM file_keys WHERE file_id = x'{id_b}';"
        ),
    );
    let vol = tv.open();
    match read_chunk(&vol, &tv, "a", 0) {
        Err(VolumeError::Keystore(KeystoreError::TamperedKey(id))) => assert_eq!(id, id_a),
        other => panic!("expected TamperedKey, got {other:?}"),
    }
    match read_chunk(&vol, &tv, "b", 0) {
        Err(VolumeError::Keystore(KeystoreError::MissingKey(id))) => assert_eq!(id, id_b),
        other => panic!("expected MissingKey, got {other:?}"),
    }
}

#[test]
fn swapped_key_rows_fail_authentication() {
    let tv = setup();
    let (id_a, id_b) = {
        let vol = tv.open();
        let a = vol.open_file(rw(&tv.blob("a"))).unwrap().file_id().unwrap();
        let b = vol.open_file(rw(&tv.blob("b"))).unwrap().file_id().unwrap();
        (a, b)
    };
    with_db(
        &tv,
        &format!(
            "UPDATE file_keys SET file_id = zeroblob(16) WHERE file_id = x'{id_a}';
             UPDATE file_keys SET file_id = x'{id_a}' WHERE file_id = x'{id_b}';
             UPDATE file_keys SET file_id = x'{id_b}' WHERE file_id = zeroblob(16);"
        ),
    );
    let vol = tv.open();
    assert!(matches!(
        read_chunk(&vol, &tv, "a", 0),
        Err(VolumeError::Keystore(KeystoreError::TamperedKey(_)))
    ));
}

#[test]
fn truncation_mid_chunk_is_corruption() {
    let tv = setup();
    let len = std::fs::metadata(tv.blob("a")).unwrap().len();
    // Cut inside the last chunk's tag: the size no longer maps to any plaintext size, or the
    // last chunk fails its tag.
    rw(&tv.blob("a")).set_len(len - 5).unwrap();
    let vol = tv.open();
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 3), 3);
    // Cut inside the nonce of a chunk: no valid plaintext size.
    rw(&tv.blob("b")).set_len(chunk_off(2) + 5).unwrap();
    assert!(matches!(
        read_chunk(&vol, &tv, "b", 0),
        Err(VolumeError::CorruptFile { .. })
    ));
}

/// A volume with file "full" of exactly three full chunks (seed 3).
fn setup_full() -> TestVolume {
    let tv = TestVolume::new();
    let vol = tv.open();
    let f = vol.create_file(rw(&tv.blob("full"))).unwrap();
    f.write_at(&vec![3u8; 3 * C], 0).unwrap();
    tv
}

fn raw_chunk(tv: &TestVolume, name: &str, i: u64) -> Vec<u8> {
    let mut c = vec![0u8; CC as usize];
    rw(&tv.blob(name))
        .read_exact_at(&mut c, chunk_off(i))
        .unwrap();
    c
}

fn append(tv: &TestVolume, name: &str, bytes: &[u8]) {
    let len = std::fs::metadata(tv.blob(name)).unwrap().len();
    rw(&tv.blob(name)).write_all_at(bytes, len).unwrap();
}

#[test]
fn v2_truncation_at_a_chunk_boundary_fails_the_new_last_chunk() {
    let tv = setup();
    // a: drop the partial last chunk 3; b: keep only chunk 0.
    rw(&tv.blob("a")).set_len(chunk_off(3)).unwrap();
    rw(&tv.blob("b")).set_len(chunk_off(1)).unwrap();
    let vol = tv.open();
    assert_corrupt_chunk(read_chunk(&vol, &tv, "a", 2), 2);
    assert_eq!(read_chunk(&vol, &tv, "a", 0).unwrap(), vec![1u8; C]);
    assert_eq!(read_chunk(&vol, &tv, "a", 1).unwrap(), vec![1u8; C]);
    assert_corrupt_chunk(read_chunk(&vol, &tv, "b", 0), 0);
}

#[test]
fn v2_chunk_appended_from_the_same_file_fails() {
    let tv = setup_full();
    // The last chunk again at the next position, and a middle chunk at the one after.
    append(&tv, "full", &raw_chunk(&tv, "full", 2));
    append(&tv, "full", &raw_chunk(&tv, "full", 1));
    let vol = tv.open();
    assert_eq!(read_chunk(&vol, &tv, "full", 1).unwrap(), vec![3u8; C]);
    // The old last chunk is now a middle chunk: its final flag no longer matches.
    assert_corrupt_chunk(read_chunk(&vol, &tv, "full", 2), 2);
    assert_corrupt_chunk(read_chunk(&vol, &tv, "full", 3), 3);
    assert_corrupt_chunk(read_chunk(&vol, &tv, "full", 4), 4);
}

#[test]
fn v2_appended_all_zero_chunks_fail() {
    let tv = setup_full();
    std::fs::copy(tv.blob("full"), tv.blob("short")).unwrap();
    // A whole zero chunk, and a zero chunk holding one plaintext byte.
    append(&tv, "full", &vec![0u8; CC as usize]);
    append(&tv, "short", &[0u8; 1 + 28]);
    let vol = tv.open();
    for name in ["full", "short"] {
        assert_corrupt_chunk(read_chunk(&vol, &tv, name, 3), 3);
        assert_corrupt_chunk(read_chunk(&vol, &tv, name, 2), 2);
        assert_eq!(read_chunk(&vol, &tv, name, 0).unwrap(), vec![3u8; C]);
    }
}

/// Residual (FORMAT.md, threat model): a v1 file carries no final flag, so a cut at a chunk
/// boundary and appended zero chunks read as a shorter file and as zeros, without an error.
#[test]
fn v1_truncation_at_a_boundary_and_appended_holes_are_not_detected() {
    let (_dir, c) = fixture_copy("v1");
    let blob = {
        let vol = common::open_volume(&c, FIXTURE_PASSWORD.as_bytes()).unwrap();
        c.join(resolve(&vol, Path::new("/dir/nested.bin")).unwrap())
    };
    let want: Vec<u8> = (0..2 * C as u32).map(|i| ((i * 7) % 256) as u8).collect();
    rw(&blob).set_len(chunk_off(2)).unwrap();
    rw(&blob).write_all_at(&[0u8; 29], chunk_off(2)).unwrap();
    let vol = common::open_volume(&c, FIXTURE_PASSWORD.as_bytes()).unwrap();
    let f = vol.open_file(rw(&blob)).unwrap();
    assert_eq!(f.plain_size().unwrap(), 2 * C as u64 + 1);
    let mut buf = vec![0u8; 3 * C];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 2 * C + 1);
    assert_eq!(&buf[..2 * C], &want[..]);
    assert_eq!(buf[2 * C], 0);
}

#[test]
fn wrong_password_is_its_own_error() {
    let tv = setup();
    match common::open_volume(&tv.cipherdir(), b"wrong") {
        Err(VolumeError::Keystore(KeystoreError::WrongPassword)) => {}
        other => panic!("expected WrongPassword, got {other:?}"),
    }
    assert!(common::open_volume(&tv.cipherdir(), PASSWORD).is_ok());
}

#[test]
fn tampered_slot_kdf_parameters_are_refused_not_hashed() {
    let tv = setup();
    with_db(&tv, "UPDATE slots SET argon2_m = 1099511627776 / 1024");
    let t = std::time::Instant::now();
    match common::open_volume(&tv.cipherdir(), PASSWORD) {
        Err(VolumeError::Keystore(KeystoreError::Crypto(
            cofferfs::crypto::CryptoError::KdfParamsOutOfBounds { .. },
        ))) => {}
        other => panic!("expected KdfParamsOutOfBounds, got {other:?}"),
    }
    assert!(
        t.elapsed().as_secs() < 5,
        "must not try to allocate a terabyte"
    );
}

#[test]
fn missing_corrupt_and_newer_header_stores_are_distinct_errors() {
    let tv = setup();
    let db = tv.cipherdir().join("cofferfs.db");
    with_db(&tv, "PRAGMA user_version = 99");
    assert!(matches!(
        common::open_volume(&tv.cipherdir(), PASSWORD),
        Err(VolumeError::Keystore(KeystoreError::NewerVersion {
            found: 99,
            ..
        }))
    ));
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    assert!(matches!(
        common::open_volume(&tv.cipherdir(), PASSWORD),
        Err(VolumeError::Keystore(KeystoreError::Corrupt(_)))
    ));
    std::fs::remove_file(&db).unwrap();
    // The volume marker says the store belongs in the cipherdir: the store is missing.
    assert!(matches!(
        common::open_volume(&tv.cipherdir(), PASSWORD),
        Err(VolumeError::StoreMissing(p)) if p == db
    ));
    // Without a marker (a volume made before markers) the directory is no cipherdir at all.
    std::fs::remove_file(tv.cipherdir().join("cofferfs.volume")).unwrap();
    assert!(matches!(
        common::open_volume(&tv.cipherdir(), PASSWORD),
        Err(VolumeError::NotACipherdir(_))
    ));
}

#[test]
fn a_volume_of_a_newer_format_version_is_refused() {
    let tv = setup();
    with_db(&tv, "UPDATE volume SET format_version = 4");
    assert!(matches!(
        common::open_volume(&tv.cipherdir(), PASSWORD),
        Err(VolumeError::Format(
            cofferfs::format::FormatError::UnsupportedVersion(4)
        ))
    ));
    // A file header of a newer version is refused too, as a corrupt file (v3 files do not
    // exist: format v3 changed the header store only).
    with_db(&tv, "UPDATE volume SET format_version = 3");
    rw(&tv.blob("a")).write_all_at(&[0, 3], 4).unwrap();
    let vol = tv.open();
    assert!(matches!(
        read_chunk(&vol, &tv, "a", 0),
        Err(VolumeError::CorruptFile { .. })
    ));
}

#[test]
fn second_open_of_the_same_volume_is_refused() {
    let tv = setup();
    let _first = tv.open();
    assert!(matches!(
        common::open_volume(&tv.cipherdir(), PASSWORD),
        Err(VolumeError::Locked(_))
    ));
}
