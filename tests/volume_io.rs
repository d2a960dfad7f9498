//! Random-access content I/O through the volume layer on real files and a real header store:
//! round trips at every interesting size, sparse extension, truncation, and a proptest model.

mod common;

use common::{TestVolume, rw};
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
        f.sync(vol.keyring(), false).unwrap();
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

#[derive(Debug, Clone)]
enum Op {
    Write { off: u64, len: usize, seed: u8 },
    SetLen(u64),
    Read { off: u64, len: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..40_000, 0usize..12_000, any::<u8>())
            .prop_map(|(off, len, seed)| Op::Write { off, len, seed }),
        1 => (0u64..45_000).prop_map(Op::SetLen),
        2 => (0u64..50_000, 0usize..20_000).prop_map(|(off, len)| Op::Read { off, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_ops_match_an_in_memory_model(ops in prop::collection::vec(op(), 1..40)) {
        let tv = TestVolume::new();
        let vol = tv.open();
        let f = vol.create_file(rw(&tv.blob("m"))).unwrap();
        let mut model: Vec<u8> = Vec::new();
        for op in &ops {
            match *op {
                Op::Write { off, len, seed } => {
                    let data = pattern(len, seed);
                    f.write_at(&data, off).unwrap();
                    if len > 0 {
                        let end = off as usize + len;
                        if model.len() < end { model.resize(end, 0); }
                        model[off as usize..end].copy_from_slice(&data);
                    }
                }
                Op::SetLen(n) => { f.set_len(n).unwrap(); model.resize(n as usize, 0); }
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
        }
        prop_assert_eq!(read_all(&f), model.clone());
        drop(f);
        let f = vol.open_file(rw(&tv.blob("m"))).unwrap();
        prop_assert_eq!(read_all(&f), model);
    }
}
