//! Crypto-shredding through the mount: the key row of a file goes when its last name goes
//! (deferred a few milliseconds and batched, `src/fs/shred_queue.rs`), at once at unmount,
//! and only at the last close for a file still open. Rows are read from the real header store
//! while the daemon runs.

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
    assert_eq!(rows_become(&m, 15), 15, "rows of 25 unlinked files deleted while mounted");

    // A rename over a file shreds the victim; a hard link keeps the row until the last name.
    std::fs::rename(m.path("f25"), m.path("f26")).unwrap();
    std::fs::hard_link(m.path("f27"), m.path("link")).unwrap();
    std::fs::remove_file(m.path("f27")).unwrap();
    assert_eq!(rows_become(&m, 14), 14);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(key_row_ids(&m.cipherdir).len(), 14, "a linked file keeps its row");
    assert_eq!(std::fs::read(m.path("link")).unwrap(), b"content 27");

    // An unlinked file still open keeps its key until the last close.
    let open = std::fs::File::open(m.path("f28")).unwrap();
    std::fs::remove_file(m.path("f28")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(key_row_ids(&m.cipherdir).len(), 14, "an open file keeps its row");
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
