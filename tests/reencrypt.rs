//! `cofferfs reencrypt` from the command line: a new file id and every chunk rewritten, the
//! same content after a remount, the old key row gone, hard-linked files refused, a volume of
//! many files done in batches, and kill -9 at random moments always leaving every file
//! readable (old or new version).

mod common;

use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::damage::{chunk_off, cipher_path, flip_byte, header_id, key_row_ids};
use common::mount::{Mounted, PASSWORD, bin, cofferfs};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn reencrypt(cipherdir: &Path, paths: &[&str]) -> (i32, String, String) {
    let mut args = vec!["reencrypt", cipherdir.to_str().unwrap()];
    args.extend_from_slice(paths);
    cofferfs(&args)
}

#[test]
fn reencrypt_changes_the_file_id_and_every_chunk_and_keeps_the_content() {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    let data = pattern(5 * 4096 + 7, 9);
    std::fs::write(m.path("d/f"), &data).unwrap();
    std::fs::write(m.path("other"), b"untouched").unwrap();
    std::fs::set_permissions(
        m.path("d/f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let mtime = std::fs::metadata(m.path("d/f"))
        .unwrap()
        .modified()
        .unwrap();
    m.unmount();
    let blob = cipher_path(&m.cipherdir, "/d/f");
    let before = std::fs::read(&blob).unwrap();
    let old_id = header_id(&blob);
    let other = cipher_path(&m.cipherdir, "/other");
    let other_before = std::fs::read(&other).unwrap();

    let (code, out, err) = reencrypt(&m.cipherdir, &["/d/f"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("re-encrypted /d/f"), "{out}");
    assert!(out.contains("1 files re-encrypted, 0 left alone"), "{out}");

    let after = std::fs::read(&blob).unwrap();
    let new_id = header_id(&blob);
    assert_ne!(old_id, new_id);
    assert_eq!(before.len(), after.len());
    for i in 0..6 {
        let r = 22 + i * 4124..(22 + (i + 1) * 4124).min(after.len());
        assert_ne!(before[r.clone()], after[r], "chunk {i} unchanged");
    }
    let rows = key_row_ids(&m.cipherdir);
    assert!(!rows.contains(&old_id), "old key row still there");
    assert!(rows.contains(&new_id));
    assert_eq!(std::fs::read(&other).unwrap(), other_before);
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("d/f")).unwrap(), data);
    assert_eq!(std::fs::read(m.path("other")).unwrap(), b"untouched");
    let meta = std::fs::metadata(m.path("d/f")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o640
    );
    assert_eq!(meta.modified().unwrap(), mtime);
}

#[test]
fn reencrypt_all_skips_hard_links_and_missing_paths_fail() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"aaa").unwrap();
    std::fs::write(m.path("b"), b"bbb").unwrap();
    std::fs::hard_link(m.path("b"), m.path("b2")).unwrap();
    let sparse = std::fs::File::create(m.path("sparse")).unwrap();
    sparse.set_len(3 * 4096 + 5).unwrap();
    drop(sparse);
    m.unmount();
    let (code, out, err) = reencrypt(&m.cipherdir, &["--all"]);
    assert_eq!(code, 28, "{out}{err}");
    // One message for the inode, under whichever of its names the walk met first.
    assert_eq!(err.matches("has 2 hard links").count(), 1, "{err}");
    assert!(err.contains("skipped /b"), "{err}");
    assert!(out.contains("re-encrypted /a"), "{out}");
    assert!(out.contains("re-encrypted /sparse"), "{out}");
    let (code, _, err) = reencrypt(&m.cipherdir, &["/nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nope"), "{err}");
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"aaa");
    assert_eq!(std::fs::read(m.path("b2")).unwrap(), b"bbb");
    assert_eq!(
        std::fs::read(m.path("sparse")).unwrap(),
        vec![0; 3 * 4096 + 5]
    );
}

/// Writes `n` small files (of varied sizes, some over a chunk) spread over three directories
/// through the mount, every tenth with an extended attribute; returns their paths and contents.
fn write_many(m: &Mounted, n: usize) -> Vec<(String, Vec<u8>)> {
    for d in 0..3 {
        std::fs::create_dir_all(m.path(&format!("d{d}"))).unwrap();
    }
    (0..n)
        .map(|i| {
            let name = format!("d{}/f{i}", i % 3);
            let data = pattern(1 + (i * 97) % 9000, i as u8);
            std::fs::write(m.path(&name), &data).unwrap();
            if i % 10 == 0 {
                let value = format!("v{i}");
                rustix::fs::setxattr(
                    m.path(&name),
                    "user.n",
                    value.as_bytes(),
                    rustix::fs::XattrFlags::empty(),
                )
                .unwrap();
            }
            (name, data)
        })
        .collect()
}

#[test]
fn reencrypt_all_of_many_files_keeps_every_content_and_xattr_and_drops_every_old_row() {
    let mut m = Mounted::new();
    let files = write_many(&m, 300);
    std::fs::write(m.path("empty"), b"").unwrap();
    std::fs::write(m.path("linked"), b"two names").unwrap();
    std::fs::hard_link(m.path("linked"), m.path("d0/linked2")).unwrap();
    m.unmount();
    let linked_id = header_id(&cipher_path(&m.cipherdir, "/linked"));
    let old_rows = key_row_ids(&m.cipherdir);
    assert_eq!(old_rows.len(), files.len() + 1);

    let (code, out, err) = reencrypt(&m.cipherdir, &["--all"]);
    assert_eq!(code, 28, "{out}{err}");
    assert!(
        out.contains("300 files re-encrypted, 1 left alone"),
        "{out}"
    );
    assert_eq!(err.matches("has 2 hard links").count(), 1, "{err}");
    assert!(
        out.contains("/empty is empty: nothing to re-encrypt"),
        "{out}"
    );
    assert_eq!(out.matches("re-encrypted /d").count(), files.len(), "{out}");

    // Every old row is gone but the hard-linked file's, which was left alone.
    let rows = key_row_ids(&m.cipherdir);
    assert_eq!(rows.len(), old_rows.len());
    let still: Vec<_> = old_rows.iter().filter(|id| rows.contains(id)).collect();
    assert_eq!(still, vec![&linked_id]);
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    m.mount(&[]);
    for (i, (name, data)) in files.iter().enumerate() {
        assert!(
            std::fs::read(m.path(name)).unwrap() == *data,
            "{name} differs"
        );
        if i % 10 == 0 {
            let mut v = [0u8; 16];
            let n = rustix::fs::getxattr(m.path(name), "user.n", &mut v).unwrap();
            assert_eq!(&v[..n], format!("v{i}").as_bytes(), "{name}'s xattr");
        }
    }
    assert_eq!(std::fs::read(m.path("empty")).unwrap(), b"");
    assert_eq!(std::fs::read(m.path("d0/linked2")).unwrap(), b"two names");
}

#[test]
fn a_file_that_fails_leaves_the_rest_of_its_batch_re_encrypted() {
    let mut m = Mounted::new();
    let files = write_many(&m, 40);
    m.unmount();
    let bad = &files[7].0;
    let bad_blob = cipher_path(&m.cipherdir, &format!("/{bad}"));
    flip_byte(&bad_blob, chunk_off(0, 0));
    let bad_id = header_id(&bad_blob);
    let old_rows = key_row_ids(&m.cipherdir);

    let (code, out, err) = reencrypt(&m.cipherdir, &["--all"]);
    assert_eq!(code, 28, "{out}{err}");
    assert!(err.contains(&format!("cofferfs: /{bad}: ")), "{err}");
    assert!(out.contains("39 files re-encrypted, 1 left alone"), "{out}");
    // The failed file's temporary file and new row are gone, its old row stays.
    let rows = key_row_ids(&m.cipherdir);
    assert_eq!(rows.len(), old_rows.len());
    let still: Vec<_> = old_rows.iter().filter(|id| rows.contains(id)).collect();
    assert_eq!(still, vec![&bad_id]);
    let temps = std::fs::read_dir(bad_blob.parent().unwrap())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with(".cofferfs.tmp.")
        })
        .count();
    assert_eq!(temps, 0);

    m.mount(&[]);
    for (name, data) in files.iter().filter(|(name, _)| name != bad) {
        assert!(
            std::fs::read(m.path(name)).unwrap() == *data,
            "{name} differs"
        );
    }
}

#[test]
fn a_path_named_twice_is_re_encrypted_twice_and_leaves_no_row_behind() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"twice").unwrap();
    m.unmount();
    let (code, out, err) = reencrypt(&m.cipherdir, &["/a", "/a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("re-encrypted /a").count(), 2, "{out}");
    let rows = key_row_ids(&m.cipherdir);
    assert_eq!(rows, vec![header_id(&cipher_path(&m.cipherdir, "/a"))]);
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"twice");
}

/// Starts `reencrypt --all` and returns the running child.
fn spawn_reencrypt_all(cipherdir: &Path) -> std::process::Child {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["reencrypt", "--all", cipherdir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    child
}

#[test]
fn kill_9_during_reencrypt_always_leaves_every_file_readable() {
    let mut m = Mounted::new();
    // Big files and enough small ones for several batches, so kills land inside a batch's
    // writes, its sync, its renames and its shredding.
    let mut files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}"), pattern(1_500_000 + i * 1000, i as u8)))
        .collect();
    for (name, data) in &files {
        std::fs::write(m.path(name), data).unwrap();
    }
    files.extend(write_many(&m, 600));
    m.unmount();
    // How long a whole run takes, so kills land anywhere inside one.
    let start = Instant::now();
    let status = spawn_reencrypt_all(&m.cipherdir).wait().unwrap();
    assert!(status.success());
    let full = start.elapsed().max(Duration::from_millis(20));
    let seed = RandomState::new();
    for round in 0..6u64 {
        let delay = full.mul_f64((seed.hash_one(round) % 1000) as f64 / 1000.0);
        let mut child = spawn_reencrypt_all(&m.cipherdir);
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        m.mount(&[]);
        for (name, data) in &files {
            let got = std::fs::read(m.path(name))
                .unwrap_or_else(|e| panic!("round {round} ({delay:?}): {name}: {e}"));
            assert!(got == *data, "round {round} ({delay:?}): {name} differs");
        }
        m.unmount();
    }
    let (code, out, err) = cofferfs(&["fsck", "--repair", m.cipherdir.to_str().unwrap()]);
    assert!(code == 0 || code == 27, "{out}{err}");
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(key_row_ids(&m.cipherdir).len(), files.len());
}

#[test]
fn reencrypt_all_leaves_alone_a_file_id_two_files_carry_and_says_so() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"original").unwrap();
    std::fs::write(m.path("b"), b"x").unwrap();
    std::fs::write(m.path("c"), b"alone").unwrap();
    m.unmount();
    let a = cipher_path(&m.cipherdir, "/a");
    std::fs::copy(&a, cipher_path(&m.cipherdir, "/b")).unwrap();
    let shared = header_id(&a);
    let c_id = header_id(&cipher_path(&m.cipherdir, "/c"));
    let (code, out, err) = cofferfs(&["reencrypt", m.cipherdir.to_str().unwrap(), "--all"]);
    assert_eq!(code, 28, "{out}{err}");
    assert!(
        err.contains("skipped /a: its file id is carried by 2 files"),
        "{err}"
    );
    assert!(
        err.contains("skipped /b: its file id is carried by 2 files"),
        "{err}"
    );
    assert!(out.contains("1 files re-encrypted, 2 left alone"), "{out}");
    let rows = key_row_ids(&m.cipherdir);
    assert!(rows.contains(&shared) && !rows.contains(&c_id), "{rows:?}");
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"original");
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"original");
    assert_eq!(std::fs::read(m.path("c")).unwrap(), b"alone");
}
