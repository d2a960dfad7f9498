//! Format stability: `tests/fixtures/v1` is a cipherdir written by the first cofferfs with
//! format v1 (password "fixture password"). Every later version must mount and read it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::mount::{bin, is_mounted, wait_timeout};

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn the_v1_fixture_mounts_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("v1");
    let m = dir.path().join("m");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1"),
        &c,
    );
    std::fs::create_dir(&m).unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "fixture password\n").unwrap();
    let mut child = Command::new(bin())
        .args(["mount", "-f", "--passfile"])
        .arg(&pw)
        .arg(&c)
        .arg(&m)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !is_mounted(&m) {
        assert!(t.elapsed().as_secs() < 30, "fixture did not mount");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let check = || {
        assert_eq!(std::fs::read(m.join("hello.txt"))?, b"hello, cofferfs v1\n");
        let nested: Vec<u8> = (0..10000u32).map(|i| ((i * 7) % 256) as u8).collect();
        assert_eq!(std::fs::read(m.join("dir/nested.bin"))?, nested);
        assert_eq!(
            std::fs::read_link(m.join("link"))?.to_str(),
            Some("dir/nested.bin")
        );
        assert_eq!(std::fs::read(m.join("L".repeat(200)))?, b"long");
        std::io::Result::Ok(())
    };
    let result = check();
    let st = Command::new(bin()).arg("umount").arg(&m).status().unwrap();
    wait_timeout(&mut child, std::time::Duration::from_secs(10));
    result.unwrap();
    assert!(st.success());
}
