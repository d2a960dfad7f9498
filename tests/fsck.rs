//! `cofferfs fsck` from the command line on volumes built through a real mount: clean on a
//! fresh volume, each kind of planted damage found and named by path and chunk, `--repair`
//! removing orphans and quarantining unreadable entries, after which fsck is clean and the
//! volume still mounts.

mod common;

use std::path::Path;

use common::damage::{chunk_off, cipher_path, db_exec, flip_byte, header_id, key_row_ids};
use common::mount::{Mounted, cofferfs};

fn fsck(cipherdir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["fsck"];
    args.extend_from_slice(extra);
    args.push(cipherdir.to_str().unwrap());
    cofferfs(&args)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A realistic tree: nested directories, multi-chunk files, a symlink, a hard link, a long
/// name and a sparse file.
fn populate(m: &Mounted) {
    std::fs::create_dir_all(m.path("docs/deep")).unwrap();
    std::fs::create_dir(m.path("lost")).unwrap();
    std::fs::write(m.path("a.txt"), b"hello").unwrap();
    std::fs::write(m.path("docs/big.bin"), pattern(5 * 4096 + 100, 1)).unwrap();
    std::fs::write(m.path("docs/deep/notes"), pattern(9000, 2)).unwrap();
    std::fs::write(m.path("docs/trunc.bin"), pattern(3 * 4096 + 50, 3)).unwrap();
    std::fs::write(m.path("docs/keyless"), pattern(100, 4)).unwrap();
    std::fs::write(m.path("docs/tampered-key"), pattern(100, 5)).unwrap();
    std::fs::write(m.path("victim"), pattern(10, 6)).unwrap();
    std::fs::write(m.path("lost/child"), pattern(10, 7)).unwrap();
    std::fs::hard_link(m.path("a.txt"), m.path("docs/a-link")).unwrap();
    std::os::unix::fs::symlink("../a.txt", m.path("docs/link")).unwrap();
    std::fs::write(m.path(&"L".repeat(200)), b"long").unwrap();
    let f = std::fs::File::create(m.path("sparse")).unwrap();
    f.set_len(4 * 4096).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"x", 4096).unwrap();
}

#[test]
fn fsck_is_clean_on_a_fresh_populated_volume() {
    let mut m = Mounted::new();
    populate(&m);
    // Mounted: the daemon checks it (through its control socket), with the same report; a
    // repair must wait for the unmount.
    let (code, online, err) = fsck(&m.cipherdir, &[]);
    assert_eq!(code, 0, "fsck of a mounted volume: {online}{err}");
    let (code, _, err) = fsck(&m.cipherdir, &["--repair"]);
    assert_eq!(
        code, 15,
        "fsck --repair must refuse a mounted volume: {err}"
    );
    assert!(err.contains("needs it unmounted"), "{err}");
    m.unmount();
    let (code, out, err) = fsck(&m.cipherdir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, online, "the same report online and offline");
    assert!(out.contains("clean"), "{out}");
    assert!(
        out.contains("4 directories, 10 files (11 names), 1 symlinks"),
        "{out}"
    );
    assert!(
        out.contains("/sparse: 2 hole chunks (all zero, read as zeros): 0, 2"),
        "{out}"
    );
}

#[test]
fn fsck_names_each_planted_damage_and_repair_fixes_it() {
    let mut m = Mounted::new();
    populate(&m);
    m.unmount();
    let c = m.cipherdir.clone();
    // Flipped byte in chunk 2.
    flip_byte(&cipher_path(&c, "/docs/big.bin"), chunk_off(2, 100));
    // Truncated inside chunk 3 (the last one).
    let t = cipher_path(&c, "/docs/trunc.bin");
    let len = std::fs::metadata(&t).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .unwrap()
        .set_len(len - 60)
        .unwrap();
    // Deleted and tampered key rows.
    let keyless = header_id(&cipher_path(&c, "/docs/keyless"));
    db_exec(
        &c,
        &format!("DELETE FROM file_keys WHERE file_id = x'{keyless}'"),
    );
    let tampered = header_id(&cipher_path(&c, "/docs/tampered-key"));
    db_exec(
        &c,
        &format!("UPDATE file_keys SET wrapped_fek = zeroblob(60) WHERE file_id = x'{tampered}'"),
    );
    // Orphan rows.
    let orphan = "00112233445566778899aabbccddeeff";
    db_exec(
        &c,
        &format!(
            "INSERT INTO file_keys (file_id, wrapped_fek, kek_generation) VALUES (x'{orphan}', zeroblob(60), 1)"
        ),
    );
    db_exec(
        &c,
        &format!(
            "INSERT INTO long_names VALUES (x'{}', 'zzz')",
            "ab".repeat(32)
        ),
    );
    // Tampered name.
    let victim = cipher_path(&c, "/victim");
    let name = victim.file_name().unwrap().to_str().unwrap().to_owned();
    let mut chars: Vec<char> = name.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let bad_name: String = chars.into_iter().collect();
    std::fs::rename(&victim, victim.with_file_name(&bad_name)).unwrap();
    // Tampered symlink target, and a long name whose row is gone.
    let link = cipher_path(&c, "/docs/link");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &link).unwrap();
    let long = cipher_path(&c, &format!("/{}", "L".repeat(200)));
    let long_name = long.file_name().unwrap().to_str().unwrap().to_owned();
    db_exec(
        &c,
        &format!(
            "DELETE FROM long_names WHERE digest != x'{}'",
            "ab".repeat(32)
        ),
    );
    // Missing directory id.
    let lost = cipher_path(&c, "/lost");
    let lost_rel = lost.strip_prefix(&c).unwrap().to_str().unwrap().to_owned();
    std::fs::remove_file(lost.join(".cofferfs.dirid")).unwrap();

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    for line in [
        "/docs/big.bin: chunk 2 fails authentication".to_owned(),
        "/docs/trunc.bin: invalid size".to_owned(),
        "chunk 3 is cut short".to_owned(),
        format!("/docs/keyless: no key row (file id {keyless})"),
        format!("/docs/tampered-key: key row fails authentication (file id {tampered})"),
        format!("header store: orphan key row {orphan}: no file carries it"),
        format!("header store: orphan long-name row {}", "ab".repeat(32)),
        format!("cipher:{bad_name}: name does not decrypt in its directory"),
        "/lost: directory id: directory id file .cofferfs.dirid is missing".to_owned(),
        format!("cipher:{lost_rel}/"),
        "/docs/link: symlink target does not decrypt".to_owned(),
        format!("cipher:{long_name}: long name has no row in the header store"),
    ] {
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("/docs/deep/notes:"), "{out}");
    assert!(!out.contains("/a.txt:"), "{out}");

    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(
        out.contains(&format!(
            "moved orphan key row {orphan} into the key quarantine"
        )),
        "{out}"
    );
    assert!(out.contains("quarantined /docs/big.bin"), "{out}");
    assert!(out.contains("wrote a new directory id for /lost"), "{out}");
    assert!(!key_row_ids(&c).contains(&orphan.to_owned()));
    let q = std::fs::read_dir(c.join("cofferfs.quarantine"))
        .unwrap()
        .count();
    assert_eq!(
        q, 8,
        "big, trunc, keyless, tampered-key, victim, lost/child, link, long"
    );

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("8 entries wait in cofferfs.quarantine"),
        "{out}"
    );

    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("a.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(m.path("docs/deep/notes")).unwrap(),
        pattern(9000, 2)
    );
    assert!(!m.path("docs/big.bin").exists());
    let root: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!root.iter().any(|n| n.contains("quarantine")), "{root:?}");
    std::fs::write(m.path("lost/new"), b"works").unwrap();
    assert_eq!(std::fs::read(m.path("lost/new")).unwrap(), b"works");
    m.unmount();
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn fsck_reports_a_cut_or_extended_v2_file_by_path_and_chunk() {
    let mut m = Mounted::new();
    for name in ["cut", "cut-inside", "dup", "zeros", "intact"] {
        std::fs::write(m.path(name), pattern(3 * 4096, 8)).unwrap();
    }
    m.unmount();
    let c = m.cipherdir.clone();
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(cipher_path(&c, name))
            .unwrap()
    };
    use std::os::unix::fs::FileExt;
    // Cut at the boundary before chunk 2, and inside chunk 2 (which then fails either way).
    open("/cut").set_len(chunk_off(2, 0)).unwrap();
    open("/cut-inside").set_len(chunk_off(2, 100)).unwrap();
    // The last chunk copied to the next position; a zero chunk appended.
    let mut last = vec![0u8; 4096 + 28];
    let dup = open("/dup");
    dup.read_exact_at(&mut last, chunk_off(2, 0)).unwrap();
    dup.write_all_at(&last, chunk_off(3, 0)).unwrap();
    open("/zeros")
        .write_all_at(&[0u8; 4096 + 28], chunk_off(3, 0))
        .unwrap();

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    for line in [
        "/cut: truncated: chunk 1 is the last chunk but was sealed as a middle chunk",
        "/cut-inside: chunk 2 fails authentication",
        "/dup: extended: chunk 2 was sealed as the last chunk but chunks follow it",
        "/dup: chunk 3 fails authentication",
        "/zeros: extended: chunk 2 was sealed as the last chunk but chunks follow it",
        "/zeros: extended: the last chunk 3 is all zeros",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("/intact:"), "{out}");
    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(out.contains("quarantined /cut "), "{out}");
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn quarantine_and_temp_names_are_reserved_and_hidden_on_plaintext_names_volumes() {
    let mut m = Mounted::with(&["--plaintext-names"], &[]);
    std::fs::write(m.path("keep"), b"keep").unwrap();
    for name in ["cofferfs.quarantine", ".cofferfs.tmp.0011223344556677"] {
        let err = std::fs::write(m.path(name), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{name}");
    }
    m.unmount();
    std::fs::create_dir(m.cipherdir.join("cofferfs.quarantine")).unwrap();
    std::fs::copy(
        m.cipherdir.join("keep"),
        m.cipherdir.join(".cofferfs.tmp.0011223344556677"),
    )
    .unwrap();
    let (code, out, err) = fsck(&m.cipherdir, &[]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(
        out.contains(
            "cipher:.cofferfs.tmp.0011223344556677: leftover temporary file of an interrupted reencrypt"
        ),
        "{out}"
    );
    m.mount(&[]);
    let names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["keep".to_owned()]);
    m.unmount();
    // The copy carries the same file id as `keep`: removing it must not remove keep's key.
    let (code, out, err) = fsck(&m.cipherdir, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(!out.contains("removed the key row"), "{out}");
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("keep")).unwrap(), b"keep");
}

/// A Syncthing-style conflict copy `<stem>.sync-conflict-20261125-123456-ABCDEFG` of the
/// ciphertext file `name`, sorting before `name` (`before`) or after it. Ciphertext names have
/// no extension, so Syncthing itself appends the suffix (after); a stem cut just before a
/// character above `.` sorts before, as a conflict copy in a directory walked earlier would.
fn conflict_name(name: &str, before: bool) -> String {
    let stem = if before {
        let cut = 1 + name[1..].find(|c: char| c != '-').unwrap();
        &name[..cut]
    } else {
        name
    };
    let copy = format!("{stem}.sync-conflict-20261125-123456-ABCDEFG");
    assert_eq!(copy.as_str() < name, before, "{copy} vs {name}");
    copy
}

#[test]
fn repair_of_sync_conflict_copies_settles_the_shared_file_id_whichever_sorts_first() {
    let mut m = Mounted::new();
    std::fs::write(m.path("first"), pattern(5000, 9)).unwrap();
    std::fs::write(m.path("second"), pattern(100, 10)).unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let mut copies = Vec::new();
    for (plain, before) in [("/first", true), ("/second", false)] {
        let orig = cipher_path(&c, plain);
        let name = orig.file_name().unwrap().to_str().unwrap();
        let copy = orig.with_file_name(conflict_name(name, before));
        std::fs::copy(&orig, &copy).unwrap();
        let rel = copy.strip_prefix(&c).unwrap().to_str().unwrap().to_owned();
        copies.push((plain, header_id(&orig), rel));
    }

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    for (plain, id, rel) in &copies {
        for line in [
            format!("cipher:{rel}: name does not decrypt in its directory"),
            format!("cipher:{rel}: file id {id} is also carried by {plain} (copied ciphertext)"),
        ] {
            assert!(out.contains(&line), "missing {line:?} in:\n{out}");
        }
        // The real file is never the one blamed.
        assert!(!out.contains(&format!("  {plain}:")), "{out}");
    }
    assert!(out.contains("4 problems found, 4 not repaired"), "{out}");

    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(out.contains("4 problems found, all repaired"), "{out}");
    for (plain, _, rel) in &copies {
        assert!(out.contains(&format!("quarantined cipher:{rel} ")), "{out}");
        assert!(!out.contains(&format!("quarantined {plain} ")), "{out}");
        assert!(!c.join(rel).exists(), "{rel}");
    }
    let q = std::fs::read_dir(c.join("cofferfs.quarantine"))
        .unwrap()
        .count();
    assert_eq!(q, 2, "the two copies, nothing else");

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("first")).unwrap(), pattern(5000, 9));
    assert_eq!(std::fs::read(m.path("second")).unwrap(), pattern(100, 10));
}

#[test]
fn a_copy_under_a_good_name_is_reported_and_left_alone_by_repair() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"shared").unwrap();
    std::fs::hard_link(m.path("a"), m.path("b")).unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    // What `rsync -a` without -H leaves: the two names become two files with one file id.
    let b = cipher_path(&c, "/b");
    let bytes = std::fs::read(&b).unwrap();
    std::fs::remove_file(&b).unwrap();
    std::fs::write(&b, &bytes).unwrap();
    let id = header_id(&b);
    let before: Vec<_> = std::fs::read_dir(&c)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    let shared = format!("file id {id} is also carried by");
    assert_eq!(out.matches(&shared).count(), 1, "{out}");
    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(out.contains("1 problems found, 1 not repaired"), "{out}");
    assert!(!out.contains("repairs"), "{out}");
    let after: Vec<_> = std::fs::read_dir(&c)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after, "nothing moved");
    assert!(key_row_ids(&c).contains(&id));

    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"shared");
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"shared");
}
