//! Integrity and crash behaviour through a real mount: a tampered chunk reads as EIO for that
//! chunk only, a (v2) file cut at a chunk boundary or with chunks appended reads as EIO at its
//! end, a file extended with ftruncate reads zeros after a remount, a tampered name is skipped
//! (not fatal), kill -9 of the daemon leaves a mount that `fusermount3 -uz` cleans up and a
//! volume that remounts with every closed file intact, and unlinking a file destroys its key
//! (crypto-shredding).

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use common::mount::{Mounted, sh};

/// The ciphertext files of the cipherdir (not cofferfs's own files).
fn blobs(m: &Mounted) -> Vec<PathBuf> {
    sh(
        &m.cipherdir,
        "find . -type f ! -name '.cofferfs.dirid' ! -name 'cofferfs.db*' ! -name cofferfs.volume \
         | sort",
    )
    .lines()
    .map(|l| m.cipherdir.join(l))
    .collect()
}

#[test]
fn flipped_chunk_byte_is_eio_for_that_chunk_only() {
    let mut m = Mounted::new();
    let data: Vec<u8> = (0..5 * 4096).map(|i| (i % 251) as u8).collect();
    std::fs::write(m.path("f"), &data).unwrap();
    m.unmount();
    let blob = blobs(&m).pop().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&blob)
        .unwrap();
    let off = 22 + 2 * (4096 + 28) + 40; // inside chunk 2
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 1], off).unwrap();
    m.mount(&[]);
    let mut file = std::fs::File::open(m.path("f")).unwrap();
    let mut buf = vec![0u8; 4096];
    for chunk in [0u64, 1, 3, 4] {
        file.seek(SeekFrom::Start(chunk * 4096)).unwrap();
        file.read_exact(&mut buf).unwrap();
        assert_eq!(
            buf,
            data[chunk as usize * 4096..(chunk as usize + 1) * 4096],
            "chunk {chunk}"
        );
    }
    file.seek(SeekFrom::Start(2 * 4096)).unwrap();
    let err = file.read_exact(&mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(
        std::fs::read(m.path("f")).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
}

const CC: u64 = 4096 + 28;

fn chunk_off(i: u64) -> u64 {
    22 + i * CC
}

/// Reads 4096 bytes at chunk `i` of `path` through the mount.
fn read_chunk(path: &std::path::Path, i: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, i * 4096)?;
    buf.truncate(n);
    Ok(buf)
}

fn assert_eio(r: std::io::Result<Vec<u8>>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: {e}"),
        Ok(b) => panic!("{what}: read {} bytes instead of EIO", b.len()),
    }
}

/// Writes `files` (name, content) through a fresh mount, unmounts, and returns the mount and
/// the ciphertext path of each file in order.
fn written(files: &[(&str, Vec<u8>)]) -> (Mounted, Vec<PathBuf>) {
    let mut m = Mounted::new();
    for (name, data) in files {
        std::fs::write(m.path(name), data).unwrap();
    }
    m.unmount();
    let blobs = files
        .iter()
        .map(|(name, _)| common::damage::cipher_path(&m.cipherdir, &format!("/{name}")))
        .collect();
    (m, blobs)
}

#[test]
fn v2_file_cut_at_a_chunk_boundary_is_eio_at_its_end() {
    let data: Vec<u8> = (0..5 * 4096).map(|i| (i % 251) as u8).collect();
    let (mut m, blobs) = written(&[("f", data.clone())]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&blobs[0])
        .unwrap();
    f.set_len(chunk_off(3)).unwrap();
    m.mount(&[]);
    assert_eq!(std::fs::metadata(m.path("f")).unwrap().len(), 3 * 4096);
    assert_eq!(read_chunk(&m.path("f"), 0).unwrap(), data[..4096]);
    assert_eio(read_chunk(&m.path("f"), 2), "the new last chunk");
    assert_eio(std::fs::read(m.path("f")), "whole file");
}

#[test]
fn v2_appended_chunks_are_eio() {
    let data: Vec<u8> = (0..3 * 4096).map(|i| (i % 251) as u8).collect();
    let (mut m, blobs) = written(&[("dup", data.clone()), ("zero", data.clone())]);
    // "dup": its last chunk copied to the next position; "zero": an all-zero chunk appended.
    let dup = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&blobs[0])
        .unwrap();
    let mut last = vec![0u8; CC as usize];
    dup.read_exact_at(&mut last, chunk_off(2)).unwrap();
    dup.write_all_at(&last, chunk_off(3)).unwrap();
    let zero = std::fs::OpenOptions::new()
        .write(true)
        .open(&blobs[1])
        .unwrap();
    zero.write_all_at(&vec![0u8; CC as usize], chunk_off(3))
        .unwrap();
    m.mount(&[]);
    for name in ["dup", "zero"] {
        let p = m.path(name);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4 * 4096, "{name}");
        assert_eq!(read_chunk(&p, 0).unwrap(), data[..4096], "{name}");
        assert_eio(read_chunk(&p, 3), name);
        assert_eio(read_chunk(&p, 2), name);
        assert_eio(std::fs::read(&p), name);
    }
}

#[test]
fn ftruncate_extension_reads_zeros_and_survives_a_remount() {
    let mut m = Mounted::new();
    std::fs::write(m.path("grown"), b"abc").unwrap();
    let size = 3 * 4096 + 5;
    std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("grown"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let mut want = vec![0u8; size as usize];
    want[..3].copy_from_slice(b"abc");
    assert_eq!(std::fs::read(m.path("grown")).unwrap(), want);
    m.unmount();
    let (code, out, err) = common::mount::cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("/grown: 2 hole chunks (all zero, read as zeros): 1, 2"),
        "{out}"
    );
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("grown")).unwrap(), want);
}

#[test]
fn tampered_name_is_skipped_in_listings() {
    let mut m = Mounted::new();
    std::fs::write(m.path("good"), b"1").unwrap();
    std::fs::write(m.path("victim"), b"2").unwrap();
    m.unmount();
    // Rename one ciphertext entry to a different (valid base64url, wrong tag) name.
    let blob = blobs(&m).into_iter().next().unwrap();
    let name = blob.file_name().unwrap().to_str().unwrap().to_owned();
    let mut chars: Vec<char> = name.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    std::fs::rename(
        &blob,
        blob.with_file_name(chars.into_iter().collect::<String>()),
    )
    .unwrap();
    m.mount(&[]);
    let names: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0] == "good" || names[0] == "victim");
}

#[test]
fn kill_9_leaves_a_cleanable_mount_and_closed_files_intact() {
    let mut m = Mounted::new();
    for i in 0..20 {
        std::fs::write(m.path(&format!("f{i}")), vec![i as u8; 10_000 + i]).unwrap();
    }
    m.kill_daemon();
    let err = std::fs::metadata(m.path("f0")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN));
    m.cleanup_dead();
    assert!(!common::mount::is_mounted(&m.mnt));
    m.mount(&[]);
    for i in 0..20 {
        assert_eq!(
            std::fs::read(m.path(&format!("f{i}"))).unwrap(),
            vec![i as u8; 10_000 + i]
        );
    }
}

/// Every row of `file_keys` as (file_id hex, wrapped_fek bytes).
fn key_rows(m: &Mounted) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open(m.cipherdir.join("cofferfs.db")).unwrap();
    let mut st = conn
        .prepare("SELECT hex(file_id), wrapped_fek FROM file_keys")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn unlink_shreds_the_key_everywhere_in_the_cipherdir() {
    let mut m = Mounted::new();
    std::fs::write(m.path("keep"), b"keep").unwrap();
    std::fs::write(m.path("doomed"), b"doomed").unwrap();
    m.unmount();
    let before = key_rows(&m);
    assert_eq!(before.len(), 2);
    m.mount(&[]);
    // The doomed file's id is the header id that disappears from the cipherdir with it.
    let ids = || -> Vec<String> { blobs(&m).iter().map(|b| header_id(b)).collect() };
    let all = ids();
    assert_eq!(all.len(), 2);
    std::fs::remove_file(m.path("doomed")).unwrap();
    let left = ids();
    let doomed_id = all.into_iter().find(|i| !left.contains(i)).unwrap();
    m.unmount();
    let wrapped = &before.iter().find(|(id, _)| *id == doomed_id).unwrap().1;
    let after = key_rows(&m);
    assert_eq!(after.len(), 1);
    assert!(after.iter().all(|(id, _)| *id != doomed_id));
    for entry in walk(&m.cipherdir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, wrapped),
            "wrapped FEK still in {}",
            entry.display()
        );
    }
}

#[test]
fn unlinked_open_file_stays_readable_until_closed_then_is_shredded() {
    let mut m = Mounted::new();
    std::fs::write(m.path("f"), b"still here").unwrap();
    let mut f = std::fs::File::open(m.path("f")).unwrap();
    std::fs::remove_file(m.path("f")).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
    drop(f);
    m.unmount();
    assert!(key_rows(&m).is_empty());
}

/// The file id in a ciphertext file's header, as upper-case hex (as SQLite's `hex()`).
fn header_id(blob: &std::path::Path) -> String {
    std::fs::read(blob).unwrap()[6..22]
        .iter()
        .map(|x| format!("{x:02X}"))
        .collect()
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
        if ft.is_dir() {
            out.extend(walk(&p));
        } else if ft.is_file() {
            out.push(p);
        }
    }
    out
}
