//! Issue 15 item 3: `fsck --repair` moves key rows no file carries into the key quarantine
//! (`quarantined_keys`) instead of destroying them; a file that comes back reads again and
//! its row is put back by the next repair; `rotate` re-wraps quarantined rows; only
//! `fsck --repair --purge-quarantine` destroys them.

mod common;

use std::path::{Path, PathBuf};

use common::damage::{cipher_path, header_id, key_row_ids};
use common::mount::{Mounted, cofferfs};

fn fsck(c: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["fsck"];
    args.extend_from_slice(extra);
    args.push(c.to_str().unwrap());
    cofferfs(&args)
}

fn quarantined(c: &Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    let mut st = conn
        .prepare("SELECT lower(hex(file_id)), kek_generation FROM quarantined_keys ORDER BY 1")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Moves the ciphertext file `from` out of the cipherdir (a file that is "away") and returns
/// where it went.
fn take_away(from: &Path, dir: &Path) -> PathBuf {
    let to = dir.join("away");
    std::fs::rename(from, &to).unwrap();
    to
}

#[test]
fn orphan_key_rows_are_quarantined_restored_rotated_and_purged_only_on_request() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"stays").unwrap();
    std::fs::write(m.path("b"), b"goes away and comes back").unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let b = cipher_path(&c, "/b");
    let id = header_id(&b);
    let outside = tempfile::tempdir().unwrap();

    // b is away: its row is quarantined, not destroyed, and fsck says how to purge.
    let away = take_away(&b, outside.path());
    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(
        out.contains(&format!(
            "moved orphan key row {id} into the key quarantine"
        )),
        "{out}"
    );
    assert!(out.contains("--purge-quarantine"), "{out}");
    assert!(!key_row_ids(&c).contains(&id));
    assert_eq!(quarantined(&c), vec![(id.clone(), 1)]);
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "a quarantined row is no problem: {out}{err}");
    assert!(
        out.contains("1 key rows wait in the key quarantine"),
        "{out}"
    );

    // It comes back: it reads through the mount at once, and the next repair puts its row
    // back.
    std::fs::rename(&away, &b).unwrap();
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("b")).unwrap(),
        b"goes away and comes back"
    );
    m.unmount();
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(
        out.contains(&format!(
            "/b: the key row of file {id} is in the key quarantine"
        )),
        "{out}"
    );
    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(
        out.contains(&format!("restored key row {id} from the key quarantine")),
        "{out}"
    );
    assert!(key_row_ids(&c).contains(&id));
    assert!(quarantined(&c).is_empty());
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");

    // Away again; a rotation re-wraps the quarantined row, which still opens b afterwards.
    let away = take_away(&b, outside.path());
    assert_eq!(fsck(&c, &["--repair"]).0, 27);
    let (code, out, err) = cofferfs(&["rotate", c.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(quarantined(&c), vec![(id.clone(), 2)]);
    std::fs::rename(&away, &b).unwrap();
    assert_eq!(fsck(&c, &["--repair"]).0, 27);
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("b")).unwrap(),
        b"goes away and comes back"
    );
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"stays");
    m.unmount();

    // Only an explicit purge destroys a quarantined row; then b stays unreadable.
    let (code, _, err) = fsck(&c, &["--purge-quarantine"]);
    assert_eq!(code, 2, "--purge-quarantine needs --repair: {err}");
    let away = take_away(&b, outside.path());
    assert_eq!(fsck(&c, &["--repair"]).0, 27);
    let (code, out, err) = fsck(&c, &["--repair", "--purge-quarantine"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("destroyed 1 key rows of the key quarantine"),
        "{out}"
    );
    assert!(quarantined(&c).is_empty());
    std::fs::rename(&away, &b).unwrap();
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(
        out.contains(&format!("/b: no key row (file id {id})")),
        "{out}"
    );
}

#[test]
fn a_purge_never_destroys_a_row_the_same_run_quarantined() {
    let mut m = Mounted::new();
    std::fs::write(m.path("b"), b"away for a while").unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let b = cipher_path(&c, "/b");
    let id = header_id(&b);
    let outside = tempfile::tempdir().unwrap();
    let away = take_away(&b, outside.path());
    // One run finds the orphan and quarantines it: its purge leaves that row for a later run.
    let (code, out, err) = fsck(&c, &["--repair", "--purge-quarantine"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(out.contains("destroyed 0 key rows"), "{out}");
    assert!(out.contains("were not purged"), "{out}");
    assert_eq!(quarantined(&c), vec![(id.clone(), 1)]);
    // The file comes back before the next run: it reads.
    std::fs::rename(&away, &b).unwrap();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"away for a while");
    m.unmount();
    // Away again: the next purge destroys what the earlier run quarantined.
    let away = take_away(&b, outside.path());
    let (code, out, err) = fsck(&c, &["--repair", "--purge-quarantine"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("destroyed 1 key rows"), "{out}");
    assert!(quarantined(&c).is_empty() && !key_row_ids(&c).contains(&id));
    drop(away);
}
