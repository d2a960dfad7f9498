//! Key rows through the mount: a new file gets its key row at its first change, not at
//! create (an empty file is a 0-byte ciphertext file with no row); the row goes when the last
//! name goes (deferred a few milliseconds and batched, `src/fs/shred_queue.rs`), at once at
//! unmount, and only at the last close for a file still open. Rows are read from the real
//! header store while the daemon runs.

mod common;

use std::time::{Duration, Instant};

use common::damage::key_row_ids;
use common::mount::Mounted;

/// Waits up to 10 s for the store to hold `n` key rows; returns the last count seen.
fn rows_become(m: &Mounted, n: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = key_row_ids(&m.cipherdir).len();
        if now == n || Instant::now() > until {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn key_rows_follow_unlink_rename_over_and_last_close() {
    let mut m = Mounted::new();
    for i in 0..40 {
        std::fs::write(m.path(&format!("f{i}")), format!("content {i}")).unwrap();
    }
    assert_eq!(key_row_ids(&m.cipherdir).len(), 40);

    for i in 0..25 {
        std::fs::remove_file(m.path(&format!("f{i}"))).unwrap();
    }
    assert_eq!(
        rows_become(&m, 15),
        15,
        "rows of 25 unlinked files deleted while mounted"
    );

    // A rename over a file shreds the victim; a hard link keeps the row until the last name.
    std::fs::rename(m.path("f25"), m.path("f26")).unwrap();
    std::fs::hard_link(m.path("f27"), m.path("link")).unwrap();
    std::fs::remove_file(m.path("f27")).unwrap();
    assert_eq!(rows_become(&m, 14), 14);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        key_row_ids(&m.cipherdir).len(),
        14,
        "a linked file keeps its row"
    );
    assert_eq!(std::fs::read(m.path("link")).unwrap(), b"content 27");

    // An unlinked file still open keeps its key until the last close.
    let open = std::fs::File::open(m.path("f28")).unwrap();
    std::fs::remove_file(m.path("f28")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        key_row_ids(&m.cipherdir).len(),
        14,
        "an open file keeps its row"
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &open, &mut text).unwrap();
    assert_eq!(text, "content 28");
    drop(open);
    assert_eq!(rows_become(&m, 13), 13, "row deleted at the last close");

    // Deletions still queued at unmount are done before the daemon exits.
    for i in 29..40 {
        std::fs::remove_file(m.path(&format!("f{i}"))).unwrap();
    }
    std::fs::remove_file(m.path("link")).unwrap();
    m.unmount();
    assert_eq!(key_row_ids(&m.cipherdir).len(), 1, "only f26 is left");
}

/// The ciphertext files at the top of the cipherdir (not the store, marker or directory id).
fn top_blobs(m: &Mounted) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(&m.cipherdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !n.starts_with("cofferfs.") && n != ".cofferfs.dirid"
        })
        .collect()
}

#[test]
fn an_empty_file_gets_its_key_at_its_first_change() {
    use std::os::unix::fs::MetadataExt;
    let m = Mounted::new();
    let p = m.path("empty");
    std::fs::File::create(&p).unwrap();
    let blobs = top_blobs(&m);
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let blob = blobs[0].clone();
    assert_eq!(
        std::fs::metadata(&blob).unwrap().len(),
        0,
        "no header for an empty file"
    );
    assert!(
        key_row_ids(&m.cipherdir).is_empty(),
        "no key row for an empty file"
    );

    // Reading it writes nothing (the mtime stays); opening it O_TRUNC (which moves the mtime,
    // as POSIX says) writes no key either.
    let before = std::fs::metadata(&p).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(std::fs::read(&p).unwrap(), b"");
    let after = std::fs::metadata(&p).unwrap();
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), 0);
    assert!(key_row_ids(&m.cipherdir).is_empty());

    // The first write commits the row and writes the header; the content reads back.
    std::fs::write(&p, b"now with content").unwrap();
    assert_eq!(key_row_ids(&m.cipherdir).len(), 1);
    assert!(std::fs::metadata(&blob).unwrap().len() > 22);
    assert_eq!(std::fs::read(&p).unwrap(), b"now with content");

    // So does growing with truncate (a sparse file of zeros).
    let q = m.path("grown");
    std::fs::File::create(&q).unwrap().set_len(10_000).unwrap();
    assert_eq!(key_row_ids(&m.cipherdir).len(), 2);
    assert_eq!(std::fs::read(&q).unwrap(), vec![0u8; 10_000]);

    // An empty file removed never had a row to shred.
    std::fs::File::create(m.path("gone")).unwrap();
    std::fs::remove_file(m.path("gone")).unwrap();
    assert_eq!(rows_become(&m, 2), 2);
}

/// A file created, unlinked while open and only then written (what `tmpfile()` does without
/// `O_TMPFILE`) gets its key through the open handle: that key goes at the last close.
#[test]
fn a_file_unlinked_before_its_first_write_is_shredded_at_close() {
    use std::io::{Read, Seek, Write};
    let m = Mounted::new();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.path("tmp"))
        .unwrap();
    std::fs::remove_file(m.path("tmp")).unwrap();
    f.write_all(b"scratch data").unwrap();
    f.sync_all().unwrap();
    assert_eq!(
        key_row_ids(&m.cipherdir).len(),
        1,
        "the first write made a key"
    );
    f.rewind().unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "scratch data");
    drop(f);
    assert_eq!(
        rows_become(&m, 0),
        0,
        "the key of the unlinked file went at its last close"
    );
}

/// Unlinking the last name finds the key row to shred however the daemon knows the file's id:
/// remembered from the file's last close (files written or read since the mount), read from
/// the header (files untouched since the mount), or read again after the fd budget closed the
/// file's fd (which drops what was remembered, as the backing inode is no longer pinned).
#[test]
fn the_last_unlink_shreds_the_row_whether_the_id_is_remembered_or_read() {
    let mut m = Mounted::new();
    for i in 0..20 {
        std::fs::write(m.path(&format!("f{i}")), format!("content {i}")).unwrap();
    }
    m.unmount();
    // A budget of 128 O_PATH fds (half the limit) for 300 files.
    m.mount_via(&["prlimit", "--nofile=256:256", "--"], &[]);
    for i in 0..10 {
        assert_eq!(
            std::fs::read(m.path(&format!("f{i}"))).unwrap(),
            format!("content {i}").as_bytes()
        );
    }
    for i in 20..300 {
        std::fs::write(m.path(&format!("f{i}")), format!("content {i}")).unwrap();
    }
    assert_eq!(key_row_ids(&m.cipherdir).len(), 300);
    // f0..f9 read (remembered, unless their fds went), f10..f19 untouched since the mount,
    // the rest written now (the first of them surely lost their fds to the budget).
    for i in 0..300 {
        std::fs::remove_file(m.path(&format!("f{i}"))).unwrap();
    }
    assert_eq!(rows_become(&m, 0), 0, "every row went with its last name");
}
