//! Bounded unlock work from a tampered header store (issue 15, item 7): at most 32 key slots,
//! and at most 8 GiB·passes of Argon2id over all the slots one unlock would try, checked
//! before any hashing. Junk slots are written into a real store with rusqlite.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{CHEAP_KDF, PASSWORD, bin, cofferfs, init_volume};

/// Inserts `n` password slots with ids `first..first+n` that open with nothing: random salt
/// and wrapped KEK, Argon2id memory `m_kib` and `t` passes.
fn insert_junk_slots(store: &Path, first: u32, n: u32, m_kib: u32, t: u32) {
    let conn = rusqlite::Connection::open(store).unwrap();
    for id in first..first + n {
        conn.execute(
            "INSERT INTO slots (slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p,
                                wrapped_kek, created)
             VALUES (?1, 'password', 'junk', ?2, ?3, ?4, 4, ?5, 0)",
            rusqlite::params![id, vec![7u8; 16], m_kib, t, vec![9u8; 60]],
        )
        .unwrap();
    }
}

/// A volume whose real slot (id 0 at `init`) is moved to `real_id`.
fn volume_with_real_slot_at(dir: &Path, real_id: u32) -> std::path::PathBuf {
    let c = dir.join("c");
    init_volume(&c, &[]);
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    conn.execute("UPDATE slots SET slot_id = ?1 WHERE slot_id = 0", [real_id])
        .unwrap();
    c
}

/// Runs `cofferfs ARGS` with the password on stdin under `/usr/bin/time`; returns (status,
/// stderr, wall time, peak memory in KiB).
fn timed(args: &[&str]) -> (i32, String, Duration, u64) {
    use std::io::Write;
    let start = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "maxrss=%M", bin()])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes());
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {err}"));
    (out.status.code().unwrap_or(-1), err, took, rss)
}

#[test]
fn eight_junk_gib_slots_before_the_real_one_are_refused_quickly_and_cheaply() {
    let dir = tempfile::tempdir().unwrap();
    let c = volume_with_real_slot_at(dir.path(), 20);
    insert_junk_slots(&c.join("cofferfs.db"), 0, 8, 1024 * 1024, 3);
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let (code, err, took, rss) = timed(&["mount", c.to_str().unwrap(), mnt.to_str().unwrap()]);
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("slot 2") && err.contains("tampered"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(rss < 200 * 1024, "peak memory {rss} KiB");
    eprintln!("refused in {took:?}, peak memory {rss} KiB");

    // The way out that the message names: one slot alone.
    let (code, err, ..) = timed(&["fsck", "--slot", "20", c.to_str().unwrap()]);
    assert!(code != 9 && code != 12, "--slot 20 should unlock: {err}");
}

#[test]
fn a_store_with_more_than_32_slots_is_refused_and_keys_add_stops_at_32() {
    let dir = tempfile::tempdir().unwrap();
    let c = volume_with_real_slot_at(dir.path(), 0);
    let store = c.join("cofferfs.db");
    // 31 cheap junk slots: 32 in all, which is allowed.
    insert_junk_slots(&store, 1, 31, 32, 1);
    let (code, out, err) = cofferfs(&["fsck", c.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let mut args = vec!["keys", "add"];
    args.extend_from_slice(&CHEAP_KDF);
    args.push(c.to_str().unwrap());
    let (code, out, err) = common::mount::run_with_stdin(&args, &format!("{PASSWORD}\nnew pw\n"));
    assert_eq!(code, 16, "{out}{err}");
    assert!(err.contains("32 key slots"), "{err}");

    insert_junk_slots(&store, 40, 1, 32, 1);
    let (code, out, err) = cofferfs(&["fsck", c.to_str().unwrap()]);
    assert_eq!(code, 9, "{out}{err}");
    assert!(err.contains("slot 40"), "{err}");
}
