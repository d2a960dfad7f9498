//! Regression (found by `tests/crash.rs`): a kill -9 of the daemon between creating a directory
//! and writing its id file (`mkdir`), or between removing the id file and the directory
//! (`rmdir`), left an empty directory without an id (or with a 0-byte one). Through the mount it
//! could then not be listed, used or removed: every operation failed with ENOENT or EIO. An
//! empty directory binds no name to its id, so it now gets a new id on first use; a directory
//! that holds entries and lost its id stays an error for `fsck --repair`.

mod common;

use std::path::{Path, PathBuf};

use common::mount::{Mounted, cofferfs};

const DIR_ID_FILE: &str = ".cofferfs.dirid";

/// The ciphertext directory of the only directory in the volume's root.
fn only_cipher_dir(cipherdir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(cipherdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// A volume with one directory `d` whose id file is then replaced by `damage` (unmounted).
fn dir_after_crash(with_file: bool, damage: impl FnOnce(&Path)) -> Mounted {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    if with_file {
        std::fs::write(m.path("d/f"), b"inside").unwrap();
    }
    m.unmount();
    damage(&only_cipher_dir(&m.cipherdir).join(DIR_ID_FILE));
    m.mount(&[]);
    m
}

fn remove(id: &Path) {
    std::fs::remove_file(id).unwrap();
}

fn empty(id: &Path) {
    std::fs::remove_file(id).unwrap();
    std::fs::File::create(id).unwrap();
}

fn fsck_clean(m: &Mounted) {
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert!(code == 0 && out.contains("clean"), "fsck: {out}{err}");
}

#[test]
fn an_empty_directory_without_id_lists_and_takes_new_files() {
    for damage in [remove as fn(&Path), empty] {
        let mut m = dir_after_crash(false, damage);
        assert_eq!(std::fs::read_dir(m.path("d")).unwrap().count(), 0);
        std::fs::write(m.path("d/new"), b"after the crash").unwrap();
        m.unmount();
        m.mount(&[]);
        assert_eq!(std::fs::read(m.path("d/new")).unwrap(), b"after the crash");
        m.unmount();
        fsck_clean(&m);
    }
}

#[test]
fn an_empty_directory_without_id_can_be_removed() {
    for damage in [remove as fn(&Path), empty] {
        let mut m = dir_after_crash(false, damage);
        std::fs::remove_dir(m.path("d")).unwrap();
        assert!(!m.path("d").exists());
        m.unmount();
        fsck_clean(&m);
    }
}

#[test]
fn a_directory_with_entries_that_lost_its_id_is_not_given_a_new_one() {
    let mut m = dir_after_crash(true, remove);
    let eio = Some(libc::EIO);
    assert_eq!(
        std::fs::read_dir(m.path("d")).unwrap_err().raw_os_error(),
        eio
    );
    let err = std::fs::write(m.path("d/g"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), eio);
    m.unmount();
    assert!(!only_cipher_dir(&m.cipherdir).join(DIR_ID_FILE).exists());
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(out.contains("/d: directory id"), "{out}");
}
