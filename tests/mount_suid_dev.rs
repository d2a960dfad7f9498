//! `-o suid` and `-o dev` (issue 15, item 8): mode bits, owners and device numbers come from
//! the unauthenticated cipherdir, so the mount is nosuid,nodev unless the user insists with
//! `--allow-suid-dev`. Checked in /proc/self/mountinfo of real mounts.

mod common;

use std::path::Path;

use common::mount::{Mounted, cofferfs, is_mounted};

/// The per-mount options of `mnt` in /proc/self/mountinfo (field 6: rw,nosuid,nodev,...).
fn mount_flags(mnt: &Path) -> Vec<String> {
    let mnt = mnt.to_str().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt))
        .unwrap_or_else(|| panic!("{mnt} not in mountinfo"));
    line.split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

#[test]
fn the_mount_is_nosuid_and_nodev_by_default() {
    let m = Mounted::new();
    let flags = mount_flags(&m.mnt);
    assert!(flags.iter().any(|f| f == "nosuid"), "{flags:?}");
    assert!(flags.iter().any(|f| f == "nodev"), "{flags:?}");
}

#[test]
fn suid_and_dev_are_refused_without_the_explicit_option() {
    let mut m = Mounted::new();
    m.unmount();
    for opt in ["suid", "dev", "noatime,suid", "dev,nosuid"] {
        let (code, out, err) = cofferfs(&[
            "mount",
            "-f",
            "-o",
            opt,
            m.cipherdir.to_str().unwrap(),
            m.mnt.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "-o {opt}: {out}{err}");
        assert!(err.contains("--allow-suid-dev"), "-o {opt}: {err}");
        assert!(!is_mounted(&m.mnt));
    }
}

#[test]
fn allow_suid_dev_mounts_with_them() {
    let mut m = Mounted::new();
    m.unmount();
    m.mount(&["--allow-suid-dev", "-o", "suid,dev"]);
    let flags = mount_flags(&m.mnt);
    assert!(!flags.iter().any(|f| f == "nosuid"), "{flags:?}");
    assert!(!flags.iter().any(|f| f == "nodev"), "{flags:?}");
    m.unmount();
    // The option alone changes nothing.
    m.mount(&["--allow-suid-dev"]);
    let flags = mount_flags(&m.mnt);
    assert!(flags.iter().any(|f| f == "nosuid"), "{flags:?}");
    assert!(flags.iter().any(|f| f == "nodev"), "{flags:?}");
}
