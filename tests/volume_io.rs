//! Random-access content I/O through the volume layer on real files and a real header store:
//! round trips at every interesting size, sparse extension, truncation, the v2 rule that a
//! file's last chunk is always a sealed chunk, v1 files keeping v1 rules, and a proptest model
//! (for a v2 and a v1 file) that checks the file with fsck's checker after every operation.

mod common;

use std::path::Path;

use cofferfs::volume::fsck::check_file_at;
use cofferfs::volume::reencrypt::resolve;
use cofferfs::volume::{ChunkedFile, Volume};
use common::{FIXTURE_PASSWORD, TestVolume, fixture_copy, header_version, rw};
use proptest::prelude::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn read_all(f: &cofferfs::volume::ChunkedFile) -> Vec<u8> {
    let n = f.plain_size().unwrap() as usize;
    let mut buf = vec![0xee; n + 10];
    let got = f.read_at(&mut buf, 0).unwrap();
    assert_eq!(got, n);
    buf.truncate(n);
    buf
}

#[test]
fn round_trips_at_chunk_edges_and_reopens() {
    let tv = TestVolume::new();
    let vol = tv.open();
    let c = vol.layout().chunk_len();
    for len in [0, 1, c - 1, c, c + 1, 3 * c, 10 * c + 17] {
        let path = tv.blob(&format!("f{len}"));
        let data = pattern(len, len as u8);
        {
            let f = vol.create_file(rw(&path)).unwrap();
            f.write_at(&data, 0).unwrap();
            assert_eq!(f.plain_size().unwrap(), len as u64);
            assert_eq!(read_all(&f), data);
        }
        let disk = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            disk,
            vol.layout().plain_size_to_cipher_size(len as u64),
            "len {len}"
        );
        let f = vol.open_file(rw(&path)).unwrap();
        assert_eq!(read_all(&f), data, "after reopen, len {len}");
    }
}

#[test]
fn data_survives_closing_the_volume() {
    let tv = TestVolume::new();
    let data = pattern(100_000, 3);
    {
        let vol = tv.open();
        let f = vol.create_file(rw(&tv.blob("x"))).unwrap();
        f.write_at(&data, 0).unwrap();
        f.sync(false).unwrap();
    }
    let vol = tv.open();
    assert_eq!(read_all(&vol.open_file(rw(&tv.blob("x"))).unwrap()), data);
}

#[test]
fn writes_past_eof_leave_holes_that_read_as_zeros() {
    let tv = TestVolume::new();
    let vol = tv.open();
    let f = vol.create_file(rw(&tv.blob("sparse"))).unwrap();
    f.write_at(b"head", 0).unwrap();
    let far = 10 * 4096 + 100;
    f.write_at(b"tail", far).unwrap();
    let all = read_all(&f);
    assert_eq!(all.len() as u64, far + 4);
    assert_eq!(&all[..4], b"head");
    assert!(all[4..far as usize].iter().all(|&b| b == 0));
    assert_eq!(&all[far as usize..], b"tail");
    // The chunks in between were never written: the backing file has a real hole there.
    let meta = std::fs::metadata(tv.blob("sparse")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < meta.len(),
        "backing file should be sparse"
    );
}

#[test]
fn set_len_truncates_and_extends_exactly() {
    let tv = TestVolume::new();
    let vol = tv.open();
    let f = vol.create_file(rw(&tv.blob("t"))).unwrap();
    let data = pattern(5 * 4096 + 123, 9);
    f.write_at(&data, 0).unwrap();
    for new_len in [5 * 4096 + 100, 4 * 4096, 3 * 4096 + 1, 4095, 1, 0] {
        f.set_len(new_len as u64).unwrap();
        assert_eq!(read_all(&f), &data[..new_len], "truncate to {new_len}");
        f.write_at(&data[..new_len], 0).unwrap();
    }
    f.write_at(b"abc", 0).unwrap();
    f.set_len(9000).unwrap();
    let all = read_all(&f);
    assert_eq!(&all[..3], b"abc");
    assert!(all[3..].iter().all(|&b| b == 0));
    f.write_at(b"Z", 8999).unwrap();
    assert_eq!(read_all(&f)[8999], b'Z');
}

#[test]
fn reads_are_clipped_at_eof() {
    let tv = TestVolume::new();
    let vol = tv.open();
    let f = vol.create_file(rw(&tv.blob("r"))).unwrap();
    f.write_at(&pattern(5000, 1), 0).unwrap();
    let mut buf = [0u8; 100];
    assert_eq!(f.read_at(&mut buf, 4950).unwrap(), 50);
    assert_eq!(f.read_at(&mut buf, 5000).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, 1 << 40).unwrap(), 0);
}

/// Asserts that fsck's checker finds nothing wrong with the ciphertext file at `path`;
/// returns its hole chunks.
fn assert_valid(vol: &Volume, path: &Path) -> Vec<u64> {
    let check = check_file_at(vol, path);
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    check.holes
}

/// True when the on-disk chunk `index` of the 4 KiB-chunk file at `path` is all zeros.
fn on_disk_hole(path: &Path, index: u64) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let at = 22 + index as usize * (4096 + 28);
    bytes[at..(at + 4096 + 28).min(bytes.len())]
        .iter()
        .all(|&b| b == 0)
}

#[test]
fn v2_files_end_in_a_sealed_chunk_after_every_resize() {
    let tv = TestVolume::new();
    let path = tv.blob("v2");
    {
        let vol = tv.open();
        let f = vol.create_file(rw(&path)).unwrap();
        assert_eq!(f.format_version(), 2);
        // Extending (set_len upwards, as ftruncate does): zeros, the new last chunk sealed.
        f.write_at(b"abc", 0).unwrap();
        f.set_len(3 * 4096 + 5).unwrap();
        assert!(!on_disk_hole(&path, 3), "the new last chunk is sealed");
        assert_eq!(assert_valid(&vol, &path), vec![1, 2]);
        // Truncating onto a chunk boundary whose chunk was a hole: it is sealed as final.
        f.set_len(2 * 4096).unwrap();
        assert!(!on_disk_hole(&path, 1));
        assert_eq!(assert_valid(&vol, &path), Vec::<u64>::new());
        // Punching the whole last chunk keeps it sealed (zeros); other chunks become holes.
        f.write_at(&pattern(2 * 4096, 1), 0).unwrap();
        f.punch_hole(0, 2 * 4096).unwrap();
        assert!(!on_disk_hole(&path, 1));
        assert_eq!(assert_valid(&vol, &path), vec![0]);
        // Writing past the end over a gap: the old last chunk becomes a middle chunk.
        f.write_at(b"end", 6 * 4096).unwrap();
        assert_eq!(assert_valid(&vol, &path), vec![0, 2, 3, 4, 5]);
        // Appending onto a full last chunk re-seals it as a middle chunk.
        f.set_len(7 * 4096).unwrap();
        f.append(b"!").unwrap();
        assert_valid(&vol, &path);
    }
    let vol = tv.open();
    let f = vol.open_file(rw(&path)).unwrap();
    let all = read_all(&f);
    assert_eq!(all.len(), 7 * 4096 + 1);
    assert_eq!(&all[6 * 4096..6 * 4096 + 3], b"end");
    assert_eq!(all[7 * 4096], b'!');
    assert!(all[..6 * 4096].iter().all(|&b| b == 0));
}

#[test]
fn a_v2_file_extended_by_set_len_reads_zeros_after_reopening_the_volume() {
    let tv = TestVolume::new();
    let path = tv.blob("grown");
    for size in [1u64, 4096, 4097, 3 * 4096, 10 * 4096 + 7] {
        {
            let vol = tv.open();
            let f = vol.create_file(rw(&path)).unwrap();
            f.set_len(size).unwrap();
            let disk = std::fs::metadata(&path).unwrap().len();
            assert_eq!(disk, vol.layout().plain_size_to_cipher_size(size));
        }
        let vol = tv.open();
        let f = vol.open_file(rw(&path)).unwrap();
        assert_eq!(read_all(&f), vec![0u8; size as usize], "size {size}");
        assert_valid(&vol, &path);
        std::fs::remove_file(&path).unwrap();
    }
}

/// The v1 fixture opened at the volume level, and the ciphertext path of its `dir/nested.bin`
/// (10000 bytes, a v1 file).
fn v1_fixture() -> (tempfile::TempDir, Volume, std::path::PathBuf) {
    let (dir, c) = fixture_copy("v1");
    let vol = common::open_volume(&c, FIXTURE_PASSWORD.as_bytes()).unwrap();
    let blob = c.join(resolve(&vol, Path::new("/dir/nested.bin")).unwrap());
    (dir, vol, blob)
}

#[test]
fn v1_files_stay_v1_and_keep_the_v1_rules() {
    let (_dir, vol, blob) = v1_fixture();
    let f = vol.open_file(rw(&blob)).unwrap();
    assert_eq!(f.format_version(), 1);
    let mut want: Vec<u8> = (0..10000u32).map(|i| ((i * 7) % 256) as u8).collect();
    assert_eq!(read_all(&f), want);
    f.write_at(b"v1 still", 5000).unwrap();
    want[5000..5008].copy_from_slice(b"v1 still");
    // Extending a v1 file leaves a trailing hole, which v1 reads as zeros.
    f.set_len(5 * 4096).unwrap();
    want.resize(5 * 4096, 0);
    assert!(on_disk_hole(&blob, 4));
    assert_eq!(assert_valid(&vol, &blob), vec![3, 4]);
    assert_eq!(read_all(&f), want);
    assert_eq!(header_version(&blob), 1);
    // A new file in the same (v1) volume is v2.
    let new = vol.create_file(rw(&blob.with_file_name("new"))).unwrap();
    assert_eq!(new.format_version(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Write { off: u64, len: usize, seed: u8 },
    SetLen(u64),
    Punch { off: u64, len: usize },
    Read { off: u64, len: usize },
}

/// A number below `max`, often on or right next to a 4 KiB chunk boundary (where the v1 and v2
/// rules differ), which a uniform draw would almost never hit.
fn near_boundary(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0..max,
        1 => (0..max / 4096).prop_map(|k| k * 4096),
        1 => (1..max / 4096, 0u64..5).prop_map(|(k, d)| k * 4096 + d - 2),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let len = |max| near_boundary(max).prop_map(|n| n as usize);
    prop_oneof![
        4 => (near_boundary(40_000), len(12_000), any::<u8>())
            .prop_map(|(off, len, seed)| Op::Write { off, len, seed }),
        1 => near_boundary(45_000).prop_map(Op::SetLen),
        1 => (near_boundary(45_000), len(20_000)).prop_map(|(off, len)| Op::Punch { off, len }),
        2 => (0u64..50_000, 0usize..20_000).prop_map(|(off, len)| Op::Read { off, len }),
    ]
}

/// Runs `ops` on the empty file `f` (ciphertext at `path`) and on an in-memory model; after
/// every operation the sizes must agree and fsck's checker must find nothing wrong.
fn run_model(
    vol: &Volume,
    path: &Path,
    f: &ChunkedFile,
    ops: &[Op],
) -> Result<Vec<u8>, TestCaseError> {
    let mut model: Vec<u8> = Vec::new();
    for op in ops {
        match *op {
            Op::Write { off, len, seed } => {
                let data = pattern(len, seed);
                f.write_at(&data, off).unwrap();
                if len > 0 {
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
            }
            Op::SetLen(n) => {
                f.set_len(n).unwrap();
                model.resize(n as usize, 0);
            }
            Op::Punch { off, len } => {
                f.punch_hole(off, len as u64).unwrap();
                let end = (off as usize + len).min(model.len());
                if (off as usize) < end {
                    model[off as usize..end].fill(0);
                }
            }
            Op::Read { off, len } => {
                let mut buf = vec![0u8; len];
                let got = f.read_at(&mut buf, off).unwrap();
                let want = model.len().saturating_sub(off as usize).min(len);
                prop_assert_eq!(got, want);
                if got > 0 {
                    prop_assert_eq!(&buf[..got], &model[off as usize..off as usize + got]);
                }
            }
        }
        prop_assert_eq!(f.plain_size().unwrap(), model.len() as u64);
        let check = check_file_at(vol, path);
        prop_assert!(
            check.problems.is_empty(),
            "after {:?}: {:?}",
            op,
            check.problems
        );
    }
    prop_assert_eq!(read_all(f), model.clone());
    Ok(model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_ops_match_an_in_memory_model(ops in prop::collection::vec(op(), 1..40)) {
        let tv = TestVolume::new();
        let vol = tv.open();
        let path = tv.blob("m");
        let f = vol.create_file(rw(&path)).unwrap();
        let model = run_model(&vol, &path, &f, &ops)?;
        drop(f);
        let f = vol.open_file(rw(&path)).unwrap();
        prop_assert_eq!(read_all(&f), model);
    }

    #[test]
    fn random_ops_on_a_v1_file_match_an_in_memory_model(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        let (_dir, vol, blob) = v1_fixture();
        let f = vol.open_file(rw(&blob)).unwrap();
        f.set_len(0).unwrap();
        let model = run_model(&vol, &blob, &f, &ops)?;
        drop(f);
        let f = vol.open_file(rw(&blob)).unwrap();
        prop_assert_eq!(f.format_version(), 1);
        prop_assert_eq!(read_all(&f), model);
    }
}
