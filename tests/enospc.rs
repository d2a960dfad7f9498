//! A full disk (issue 5, point 6): a cipherdir on a 2 MiB tmpfs is filled through the mount,
//! once with `--no-writeback-cache` and once with the writeback cache (the default), where the
//! error comes at `close()`/`fsync()`, as on NFS.
//! The writer that runs out of space gets ENOSPC (not EIO, not a short success); every file
//! written and closed before reads back exactly, also after a remount on the full disk; the
//! file whose append failed keeps its old content; a create that fails (the header store
//! cannot grow either) leaves no name behind; deleting a file frees space and writing works
//! again; `fsck` is clean.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::close;
use common::mount::{Mounted, cofferfs, init_volume, is_mounted};

/// A tmpfs of `size` mounted on a fresh directory, unmounted (lazily if busy) in `Drop`.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cofferfs-enospc")
            .tempdir_in("/tmp")
            .unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs failed (needs root)");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let p = self.dir.path();
        if is_mounted(p) && !Command::new("umount").arg(p).status().unwrap().success() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// A mounted volume on a tiny tmpfs. Fields drop in order: the FUSE mount goes first.
struct TinyVolume {
    m: Mounted,
    _fs: Tmpfs,
}

impl TinyVolume {
    fn new(mount_flags: &[&str]) -> Self {
        let fs = Tmpfs::new("2m");
        let cipherdir: PathBuf = fs.path().join("cipher");
        init_volume(&cipherdir, &[]);
        let mut m = Mounted::adopt(cipherdir);
        m.mount(mount_flags);
        TinyVolume { m, _fs: fs }
    }
}

/// Content of file `i`: distinct per file, so a swapped or mixed-up file is caught.
fn content(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u64 * 31 + i as u64 * 7919) as u8 ^ (k >> 12) as u8)
        .collect()
}

/// Creates `path` with `data` and closes it; the error says which step failed.
fn write_file(path: &Path, data: &[u8]) -> Result<(), (&'static str, std::io::Error)> {
    let mut f = File::create(path).map_err(|e| ("create", e))?;
    f.write_all(data).map_err(|e| ("write", e))?;
    close(f).map_err(|e| ("close", e))
}

fn assert_enospc(what: &str, e: &std::io::Error) {
    assert_eq!(
        e.raw_os_error(),
        Some(libc::ENOSPC),
        "{what} failed with {e}, not ENOSPC"
    );
}

/// Every file in `files` reads back exactly.
fn check(m: &Mounted, files: &[(String, Vec<u8>)], when: &str) {
    for (name, data) in files {
        let got = std::fs::read(m.path(name)).unwrap_or_else(|e| panic!("{when}: {name}: {e}"));
        assert!(got == *data, "{when}: {name} differs");
    }
}

/// A file that a full disk did not let through: the step that failed, its name and content.
type Failed = (&'static str, String, Vec<u8>);

/// Writes 64 KiB files until one fails, which must be with ENOSPC; returns the files
/// written and closed, and the one that failed.
fn fill_until_enospc(m: &Mounted) -> (Vec<(String, Vec<u8>)>, Failed) {
    let mut files = Vec::new();
    for i in 0..100 {
        let name = format!("f{i}");
        let data = content(i, 64 << 10);
        match write_file(&m.path(&name), &data) {
            Ok(()) => files.push((name, data)),
            Err((step, e)) => {
                assert_enospc(&format!("{step} of {name}"), &e);
                assert!(files.len() > 5, "the disk filled too early");
                return (files, (step, name, data));
            }
        }
    }
    panic!("2 MiB took 100 files of 64 KiB without ENOSPC");
}

/// `fill_until_enospc`, then the failed file (if it was created) reads without error as a
/// prefix of what was written, and deleting it works on the full disk.
fn fill(m: &Mounted) -> Vec<(String, Vec<u8>)> {
    let (files, (step, name, data)) = fill_until_enospc(m);
    if step != "create" {
        let got = std::fs::read(m.path(&name))
            .unwrap_or_else(|e| panic!("{name}, whose write failed: {e}"));
        assert!(
            data.starts_with(&got),
            "{name}: not a prefix of what was written"
        );
        // Deleting must work on a full disk: it is how space comes back.
        std::fs::remove_file(m.path(&name)).unwrap();
    }
    files
}

/// Appends to `name` until a write fails with ENOSPC: the old content stays.
fn append_until_full(m: &Mounted, name: &str, old: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(m.path(name)).unwrap();
    let e = f.write_all(&content(99, 256 << 10)).unwrap_err();
    assert_enospc("append", &e);
    drop(f);
    let got = std::fs::read(m.path(name)).expect("the file whose append failed reads");
    assert!(
        got.starts_with(old),
        "{name}: the append that failed damaged old content"
    );
}

/// Creates small files (kept, so the space left is used up whatever it was) until a create
/// or write fails: it fails with ENOSPC, a failed create leaves no name, and every small file
/// is removed again afterwards.
fn create_until_full(m: &Mounted) {
    let mut made = Vec::new();
    for i in 0..5000 {
        let name = format!("small{i}");
        if let Err((step, e)) = write_file(&m.path(&name), b"x") {
            assert_enospc(&format!("{step} of {name}"), &e);
            if step == "create" {
                assert!(
                    !m.path(&name).exists(),
                    "a failed create left {name} behind"
                );
            } else {
                made.push(name);
            }
            for name in made {
                std::fs::remove_file(m.path(&name)).unwrap();
            }
            return;
        }
        made.push(name);
    }
    panic!("creates never ran out of space");
}

/// Deleting a file frees space on the full disk and a new file can be written; then the
/// volume is unmounted and `fsck` must find it clean.
fn free_space_and_write_again(m: &mut Mounted, files: &mut Vec<(String, Vec<u8>)>) {
    let (freed, _) = files.pop().unwrap();
    std::fs::remove_file(m.path(&freed)).unwrap();
    let again = ("again".to_owned(), content(1000, 32 << 10));
    write_file(&m.path(&again.0), &again.1).expect("writing after a delete");
    files.push(again);
    check(m, files, "after freeing space");
    m.unmount();
    fsck_clean(&m.cipherdir);
}

fn fsck_clean(cipherdir: &Path) {
    let (code, out, err) = cofferfs(&["fsck", cipherdir.to_str().unwrap()]);
    assert!(code == 0 && out.contains("clean"), "fsck: {out}{err}");
}

/// Without the writeback cache every `write()` reaches the daemon before it returns, so the
/// writer sees ENOSPC at `write()` and the failed file reads back (through the same mount) as
/// a prefix of what was written.
#[test]
fn a_full_disk_gives_enospc_and_loses_nothing() {
    let mut v = TinyVolume::new(&["--no-writeback-cache"]);
    let m = &mut v.m;
    let mut files = fill(m);
    check(m, &files, "after ENOSPC");
    let (name, old) = files[0].clone();
    append_until_full(m, &name, &old);
    files[0].1 = std::fs::read(m.path(&name)).unwrap();
    // Holding some bytes of space back keeps the next step honest: it fills the rest with
    // files of one byte, which need a key row each, until the header store cannot grow.
    create_until_full(m);
    check(m, &files, "after a failed create");

    m.unmount();
    let (code, out, err) = cofferfs(&["info", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 0, "info on a full disk: {out}{err}");
    m.mount(&[]);
    check(m, &files, "after a remount on the full disk");

    free_space_and_write_again(m, &mut files);
    m.mount(&[]);
    check(m, &files, "after the last remount");
    m.unmount();
}

/// With the writeback cache (the default) a write lands in the page cache first, so ENOSPC
/// reaches the writer at `close()` (or `fsync()`) instead of `write()`. The kernel keeps its
/// own idea of the failed file until the mount forgets it, so that file is checked after a
/// remount (a prefix of what was written, or nothing); every file closed before the failure
/// reads back exactly, before and after; deleting frees space; `fsck` is clean.
#[test]
fn with_the_writeback_cache_enospc_comes_at_close_and_nothing_closed_is_lost() {
    let mut v = TinyVolume::new(&[]);
    let m = &mut v.m;
    let (mut files, (_, failed, data)) = fill_until_enospc(m);
    check(m, &files, "after ENOSPC");
    m.unmount();
    m.mount(&[]);
    check(m, &files, "after a remount");
    match std::fs::read(m.path(&failed)) {
        Ok(got) => assert!(
            data.starts_with(&got),
            "{failed}: not a prefix of what was written"
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{failed}: {e}"),
    }
    let _ = std::fs::remove_file(m.path(&failed));
    free_space_and_write_again(m, &mut files);
}
