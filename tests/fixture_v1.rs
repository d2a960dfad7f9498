//! Format stability: `tests/fixtures/v1` is a cipherdir written by the first cofferfs with
//! format v1 (password "fixture password"). Every later version must mount and read it, and
//! write to it: its files keep the v1 rules and their version, new files are v2, and a
//! read-write mount records format version 2 for the volume (a read-only mount leaves it alone).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use cofferfs::volume::reencrypt::resolve;
use common::mount::{Mounted, cofferfs, cofferfs_with};
use common::{FIXTURE_PASSWORD, fixture_copy, header_version};

fn nested() -> Vec<u8> {
    (0..10000u32).map(|i| ((i * 7) % 256) as u8).collect()
}

/// The ciphertext path of plaintext path `plain` in the (unmounted) fixture copy `c`.
fn blob(c: &Path, plain: &str) -> PathBuf {
    let vol = common::open_volume(c, FIXTURE_PASSWORD.as_bytes()).unwrap();
    c.join(resolve(&vol, Path::new(plain)).unwrap())
}

/// `format version` as `cofferfs info` reports it.
fn volume_format_version(c: &Path) -> String {
    let (code, out, err) = cofferfs(&["info", c.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    out.lines()
        .find_map(|l| l.strip_prefix("format version:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no format version in {out}"))
}

#[test]
fn the_v1_fixture_mounts_and_reads() {
    let m = Mounted::fixture("v1", &[]);
    assert_eq!(
        std::fs::read(m.path("hello.txt")).unwrap(),
        b"hello, cofferfs v1\n"
    );
    assert_eq!(std::fs::read(m.path("dir/nested.bin")).unwrap(), nested());
    assert_eq!(
        std::fs::read_link(m.path("link")).unwrap().to_str(),
        Some("dir/nested.bin")
    );
    assert_eq!(std::fs::read(m.path(&"L".repeat(200))).unwrap(), b"long");
}

#[test]
fn the_v1_fixture_stays_writable_and_its_files_stay_v1() {
    let mut m = Mounted::fixture("v1", &["--ro"]);
    assert_eq!(
        std::fs::read(m.path("hello.txt")).unwrap(),
        b"hello, cofferfs v1\n"
    );
    m.unmount();
    assert_eq!(volume_format_version(&m.cipherdir), "1", "after --ro");
    // `-o ro` is the same request as `--ro`, alone or among other options.
    for opts in ["ro", "noatime,ro"] {
        m.mount(&["-o", opts]);
        assert_eq!(
            std::fs::read(m.path("hello.txt")).unwrap(),
            b"hello, cofferfs v1\n"
        );
        m.unmount();
        assert_eq!(volume_format_version(&m.cipherdir), "1", "after -o {opts}");
    }

    m.mount(&[]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.path("hello.txt"))
        .unwrap()
        .write_all(b"more\n")
        .unwrap();
    let mut want = nested();
    want[5000..5006].copy_from_slice(b"edited");
    want.resize(12_000, 0);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("dir/nested.bin"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"edited", 5000).unwrap();
    f.set_len(12_000).unwrap();
    drop(f);
    std::fs::write(m.path("new.txt"), b"new file").unwrap();
    m.unmount();

    let c = m.cipherdir.clone();
    assert_eq!(volume_format_version(&c), "3", "migrated to v3");
    assert_eq!(header_version(&blob(&c, "/hello.txt")), 1);
    assert_eq!(header_version(&blob(&c, "/dir/nested.bin")), 1);
    assert_eq!(header_version(&blob(&c, "/new.txt")), 2);
    let (code, out, err) = cofferfs_with(&["fsck", c.to_str().unwrap()], FIXTURE_PASSWORD);
    assert_eq!(code, 0, "{out}{err}");

    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("hello.txt")).unwrap(),
        b"hello, cofferfs v1\nmore\n"
    );
    assert_eq!(std::fs::read(m.path("dir/nested.bin")).unwrap(), want);
    assert_eq!(std::fs::read(m.path("new.txt")).unwrap(), b"new file");
}

#[test]
fn reencrypt_turns_a_v1_file_into_a_v2_file() {
    let (_dir, c) = fixture_copy("v1");
    let before = blob(&c, "/dir/nested.bin");
    assert_eq!(header_version(&before), 1);
    let (code, out, err) = cofferfs_with(
        &["reencrypt", c.to_str().unwrap(), "/dir/nested.bin"],
        FIXTURE_PASSWORD,
    );
    assert_eq!(code, 0, "{out}{err}");
    let after = blob(&c, "/dir/nested.bin");
    assert_eq!(header_version(&after), 2);
    assert_eq!(header_version(&blob(&c, "/hello.txt")), 1, "untouched");
    assert_eq!(volume_format_version(&c), "3", "migrated to v3");
    let vol = common::open_volume(&c, FIXTURE_PASSWORD.as_bytes()).unwrap();
    let f = vol.open_file(std::fs::File::open(after).unwrap()).unwrap();
    let mut buf = vec![0u8; 20_000];
    let n = f.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], &nested()[..]);
}

#[test]
fn upgrading_the_volume_format_version_is_recorded_once() {
    let (_dir, c) = fixture_copy("v1");
    let vol = common::open_volume(&c, FIXTURE_PASSWORD.as_bytes()).unwrap();
    assert_eq!(vol.keyring().store().params().unwrap().format_version, 1);
    assert!(vol.upgrade_format_version().unwrap());
    assert!(!vol.upgrade_format_version().unwrap());
    assert_eq!(vol.keyring().store().params().unwrap().format_version, 3);
}
