//! `--header-store PATH`: a volume whose header store lives outside its cipherdir, through the
//! real binary and real mounts. The cipherdir and the store are paired by the volume marker
//! (`cofferfs.volume`, docs/FORMAT.md); every command refuses a store of another volume, a
//! missing `--header-store` and a missing store file with its exit code and nothing changed; a
//! second mount through a copy of either half is refused; the cipherdir alone (rsync) plus the
//! store file mounts elsewhere; management commands work with the option.

mod common;

use std::path::{Path, PathBuf};

use common::mount::{Mounted, PASSWORD, cofferfs, init_volume, is_mounted, sh};

/// Exit codes from src/cli/exit.rs (never renumbered).
const OK: i32 = 0;
const CIPHERDIR: i32 = 6;
const HEADER_STORE: i32 = 9;
const LOCKED: i32 = 15;
const STORE_ELSEWHERE: i32 = 21;
const STORE_MISMATCH: i32 = 22;
const STORE_PATH: i32 = 23;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Everything under `dir`, `dir` itself included: type, mode, size, mtime, path, and the hash
/// of every file. Equal states mean nothing was created, removed, written or touched.
fn state(dir: &Path) -> String {
    sh(
        dir,
        "find . -printf '%y %m %s %T@ %p\\n' | LC_ALL=C sort; \
         find . -type f -exec sha256sum {} + | LC_ALL=C sort",
    )
}

/// The plaintext tree seen through a mount: types, modes, link counts, sizes, targets, hashes.
fn plain_view(mnt: &Path) -> String {
    sh(
        mnt,
        "find . -printf '%y %m %n %s %p %l\\n' | LC_ALL=C sort; \
         find . -type f -exec sha256sum {} + | LC_ALL=C sort",
    )
}

/// cofferfs's own files in a cipherdir root: names that start with "cofferfs", long names
/// (`cofferfs.long.…`, user entries) left out.
fn cofferfs_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("cofferfs") && !n.starts_with("cofferfs.long."))
        .collect();
    v.sort();
    v
}

/// The `volume id:` line of `info`.
fn volume_id(args: &[&str]) -> String {
    let mut v = vec!["info"];
    v.extend_from_slice(args);
    let (code, out, err) = cofferfs(&v);
    assert_eq!(code, OK, "{out}{err}");
    out.lines()
        .find_map(|l| l.strip_prefix("volume id:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Every command that opens an existing volume, on `cipherdir` with `extra` options (the
/// `--header-store` under test), mounting on `mnt`. Each fails before it asks for a secret.
fn every_command(cipherdir: &Path, extra: &[&str], mnt: &Path) -> Vec<Vec<String>> {
    let c = s(cipherdir).to_owned();
    let verbs: [(&[&str], &[&str]); 9] = [
        (&["info"], &[]),
        (&["keys", "list"], &[]),
        (&["mount"], &[s(mnt)]),
        (&["fsck"], &[]),
        (&["reencrypt"], &["--all"]),
        (&["passwd"], &[]),
        (&["rotate"], &[]),
        (&["keys", "add"], &[]),
        (&["keys", "remove"], &["0"]),
    ];
    verbs
        .iter()
        .map(|(verb, after)| {
            let mut v: Vec<String> = verb.iter().map(|x| x.to_string()).collect();
            v.extend(extra.iter().map(|x| x.to_string()));
            v.push(c.clone());
            v.extend(after.iter().map(|x| x.to_string()));
            v
        })
        .collect()
}

/// Runs a command that must not mount anything on `mnt`; if it did (a regression), the
/// daemon it left is unmounted before the caller's assertions fail.
fn run_refused(args: &[&str], mnt: &Path) -> (i32, String, String) {
    let result = cofferfs(args);
    if is_mounted(mnt) {
        cofferfs(&["umount", s(mnt)]);
        panic!("{args:?} mounted: {result:?}");
    }
    result
}

/// Runs every command of `every_command` and checks each fails with `code` and exactly
/// `message` on stderr, without mounting anything.
fn all_refused(cipherdir: &Path, extra: &[&str], mnt: &Path, code: i32, message: &str) {
    for args in every_command(cipherdir, extra, mnt) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, out, err) = run_refused(&args, mnt);
        assert_eq!((got, err.as_str()), (code, message), "{args:?}: {out}");
        assert_eq!(out, "", "{args:?}");
    }
}

#[test]
fn external_store_volume_round_trips_and_keeps_sqlite_files_out_of_the_cipherdir() {
    let mut m = Mounted::with_header_store(&[], &[]);
    let store = m.header_store.clone().unwrap();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/f"), b"external store\n").unwrap();
    std::fs::write(m.path("big"), vec![3u8; 50_000]).unwrap();
    // While mounted, SQLite's WAL sits next to the store; the cipherdir holds only the marker.
    assert!(Path::new(&format!("{}-wal", s(&store))).exists());
    assert_eq!(cofferfs_names(&m.cipherdir), ["cofferfs.volume"]);
    m.unmount();
    assert_eq!(cofferfs_names(&m.cipherdir), ["cofferfs.volume"]);
    assert_eq!(
        cofferfs_names(&m.dir.path().join("keys")),
        Vec::<String>::new()
    );
    assert_eq!(
        sh(&m.dir.path().join("keys"), "ls"),
        "store.db\n",
        "the WAL is folded back at unmount"
    );
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("d/f")).unwrap(), b"external store\n");
    assert_eq!(std::fs::read(m.path("big")).unwrap(), vec![3u8; 50_000]);
    assert_eq!(sh(&m.mnt, "ls -A"), "big\nd\n", "the marker is hidden");
}

#[test]
fn a_store_of_another_volume_is_refused_by_every_command_with_nothing_changed() {
    let t = tempfile::tempdir().unwrap();
    let [a, b, keys, mnt] = ["a", "b", "keys", "mnt"].map(|n| t.path().join(n));
    std::fs::create_dir(&keys).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    let (a_db, b_db) = (keys.join("a.db"), keys.join("b.db"));
    init_volume(&a, &["--header-store", s(&a_db)]);
    init_volume(&b, &["--header-store", s(&b_db)]);
    let id_a = volume_id(&["--header-store", s(&a_db), s(&a)]);
    let id_b = volume_id(&["--header-store", s(&b_db), s(&b)]);
    assert_ne!(id_a, id_b);
    let before = (state(&a), state(&keys));
    let message = format!(
        "cofferfs: header store {} does not belong to {}: the store is volume {id_b}, the \
         cipherdir is volume {id_a}\n",
        b_db.display(),
        a.display()
    );
    all_refused(
        &a,
        &["--header-store", s(&b_db)],
        &mnt,
        STORE_MISMATCH,
        &message,
    );
    // A default-layout store of another volume is refused the same way.
    let c = t.path().join("c");
    init_volume(&c, &[]);
    let c_db = c.join("cofferfs.db");
    let (code, _, err) = cofferfs(&["info", "--header-store", s(&c_db), s(&a)]);
    assert_eq!(code, STORE_MISMATCH, "{err}");
    assert!(err.contains("does not belong to"), "{err}");
    assert_eq!((state(&a), state(&keys)), before, "something changed");
}

#[test]
fn missing_option_missing_store_and_misplaced_option_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let [a, c, keys, mnt] = ["a", "c", "keys", "mnt"].map(|n| t.path().join(n));
    std::fs::create_dir(&keys).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    let a_db = keys.join("a.db");
    init_volume(&a, &["--header-store", s(&a_db)]);
    init_volume(&c, &[]);
    let before = (state(&a), state(&keys), state(&c));

    let message = format!(
        "cofferfs: {} keeps its header store elsewhere: pass --header-store PATH\n",
        a.display()
    );
    all_refused(&a, &[], &mnt, STORE_ELSEWHERE, &message);

    let gone = keys.join("gone.db");
    let message = format!("cofferfs: header store {} does not exist\n", gone.display());
    all_refused(
        &a,
        &["--header-store", s(&gone)],
        &mnt,
        HEADER_STORE,
        &message,
    );

    let message = format!(
        "cofferfs: {} keeps its header store inside it (cofferfs.db): drop --header-store\n",
        c.display()
    );
    all_refused(
        &c,
        &["--header-store", s(&a_db)],
        &mnt,
        STORE_MISMATCH,
        &message,
    );

    // A store moved into the cipherdir is refused: its files would sit among the blobs.
    let (code, _, err) = cofferfs(&["info", "--header-store", s(&a.join("x.db")), s(&a)]);
    assert_eq!(code, STORE_PATH, "{err}");
    assert_eq!(
        (state(&a), state(&keys), state(&c)),
        before,
        "something changed"
    );
}

#[test]
fn init_refuses_an_existing_store_path_and_one_inside_the_cipherdir() {
    let t = tempfile::tempdir().unwrap();
    let existing = t.path().join("existing.db");
    std::fs::write(&existing, b"").unwrap();
    let fresh = t.path().join("fresh");
    let (code, _, err) = cofferfs(&["init", "--header-store", s(&existing), s(&fresh)]);
    assert_eq!(code, STORE_PATH, "{err}");
    assert_eq!(
        err,
        format!(
            "cofferfs: header store {}: exists already (init never overwrites a store)\n",
            existing.display()
        )
    );
    assert!(
        !fresh.exists(),
        "init created the cipherdir before refusing"
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"");

    let (code, _, err) = cofferfs(&["init", "--header-store", "/nonexistent/x.db", s(&fresh)]);
    assert_eq!(code, STORE_PATH, "{err}");
    assert!(err.ends_with(": its directory does not exist\n"), "{err}");
    assert!(!fresh.exists());

    let c = t.path().join("c");
    std::fs::create_dir(&c).unwrap();
    let inside = c.join("keys.db");
    let (code, _, err) = cofferfs(&["init", "--header-store", s(&inside), s(&c)]);
    assert_eq!(code, STORE_PATH, "{err}");
    assert_eq!(
        err,
        format!(
            "cofferfs: header store {}: lies inside the cipherdir (only its own cofferfs.db \
             may)\n",
            inside.display()
        )
    );
    assert_eq!(
        sh(&c, "ls -A"),
        "",
        "init wrote into the cipherdir before refusing"
    );

    // The default place, spelled out, is the default layout: no option needed afterwards.
    init_volume(&c, &["--header-store", s(&c.join("cofferfs.db"))]);
    let (code, out, err) = cofferfs(&["info", s(&c)]);
    assert_eq!(code, OK, "{err}");
    assert!(
        out.contains(&format!(
            "header store:    {}\n",
            c.join("cofferfs.db").display()
        )),
        "{out}"
    );
}

#[test]
fn every_new_cipherdir_carries_a_marker_and_old_ones_open_without_it() {
    let t = tempfile::tempdir().unwrap();
    let (c, keys) = (t.path().join("c"), t.path().join("keys"));
    std::fs::create_dir(&keys).unwrap();
    init_volume(&c, &[]);
    let id = volume_id(&[s(&c)]);
    let marker = std::fs::read(c.join("cofferfs.volume")).unwrap();
    let hex: String = marker[7..].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        &marker[..7],
        b"CFSV\x00\x01\x00",
        "magic, version 1, store in the cipherdir"
    );
    assert_eq!(hex, id);

    let e = t.path().join("e");
    let e_db = keys.join("e.db");
    init_volume(&e, &["--header-store", s(&e_db)]);
    let marker = std::fs::read(e.join("cofferfs.volume")).unwrap();
    assert_eq!(&marker[..7], b"CFSV\x00\x01\x01", "store elsewhere");
    assert_eq!(cofferfs_names(&e), ["cofferfs.volume"]);

    // A damaged marker is refused as a damaged cipherdir.
    let m = e.join("cofferfs.volume");
    let mut bad = marker.clone();
    bad[0] ^= 0x20;
    std::fs::set_permissions(&m, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&m, &bad).unwrap();
    let (code, _, err) = cofferfs(&["info", "--header-store", s(&e_db), s(&e)]);
    assert_eq!(code, CIPHERDIR, "{err}");
    assert_eq!(
        err,
        format!(
            "cofferfs: volume marker {}: not a cofferfs volume marker: bad magic\n",
            m.display()
        )
    );

    // A default-layout cipherdir without a marker (made before markers) still opens.
    std::fs::remove_file(c.join("cofferfs.volume")).unwrap();
    assert_eq!(volume_id(&[s(&c)]), id);
}

#[test]
fn a_second_mount_through_a_copy_of_the_store_or_of_the_cipherdir_is_refused() {
    let m = Mounted::with_header_store(&[], &[]);
    let store = m.header_store.clone().unwrap();
    std::fs::write(m.path("f"), b"x").unwrap();
    let other = m.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let store_copy = m.dir.path().join("keys/copy.db");
    std::fs::copy(&store, &store_copy).unwrap();
    sh(m.dir.path(), "rsync -a cipher/ cipher-copy/");
    let cipher_copy = m.dir.path().join("cipher-copy");

    // Mounting `cipherdir` with `store` on `other` is refused: `busy` is in use.
    let refused = |store: &Path, cipherdir: &Path, busy: &Path, why: &str| {
        let (code, _, err) = run_refused(
            &["mount", "--header-store", s(store), s(cipherdir), s(&other)],
            &other,
        );
        assert_eq!(code, LOCKED, "{err}");
        let want = format!(
            "cofferfs: {} is in use by another cofferfs process{why}\n",
            busy.display()
        );
        assert_eq!(err, want);
    };
    // The same cipherdir with a copy of its store: the marker's lock refuses it, and the
    // cipherdir is found in the mount table.
    let at = format!(": it is already mounted at {}", m.mnt.display());
    refused(&store_copy, &m.cipherdir, &m.cipherdir, &at);
    // A copy of the cipherdir with the same store: the store's lock refuses it.
    refused(&store, &cipher_copy, &store, " (mounted?)");
    // Management commands too.
    let (code, _, err) = cofferfs(&["passwd", "--header-store", s(&store), s(&cipher_copy)]);
    assert_eq!(code, LOCKED, "{err}");
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
}

#[test]
fn the_cipherdir_alone_plus_the_store_file_mounts_elsewhere_and_idle_cycles_change_nothing() {
    let mut m = Mounted::with_header_store(&[], &[]);
    sh(
        &m.mnt,
        "mkdir -p a/b && printf 'one' > a/one && head -c 100000 /dev/urandom > a/b/rand \
         && ln a/one a/b/one-link && ln -s ../one a/b/link \
         && printf 'long' > \"$(printf 'x%.0s' $(seq 1 230))\"",
    );
    let before = plain_view(&m.mnt);
    m.unmount();
    // The cipherdir is synced alone; the store travels separately.
    let far = tempfile::tempdir().unwrap();
    sh(
        m.dir.path(),
        &format!(
            "rsync -aH cipher/ {0}/blobs/ && mkdir {0}/vault && cp -p keys/store.db {0}/vault/",
            far.path().display()
        ),
    );
    assert_eq!(
        cofferfs_names(&far.path().join("blobs")),
        ["cofferfs.volume"]
    );
    let mut c =
        Mounted::adopt_with_store(far.path().join("blobs"), far.path().join("vault/store.db"));
    c.mount(&[]);
    assert_eq!(plain_view(&c.mnt), before, "the copy reads differently");
    c.unmount();

    // An idle mount cycle leaves the cipherdir exactly as rsync last saw it.
    sh(m.dir.path(), "rsync -aH cipher/ backup/");
    m.mount(&[]);
    sh(
        &m.mnt,
        "ls -lR > /dev/null && find . -type f -exec cat {} + > /dev/null",
    );
    m.unmount();
    let out = sh(m.dir.path(), "rsync -aHi --dry-run cipher/ backup/");
    assert_eq!(out.trim(), "", "an idle mount cycle changed: {out}");
}

#[test]
fn management_commands_work_with_header_store() {
    let mut m = Mounted::with_header_store(&[], &[]);
    std::fs::write(m.path("doc"), b"managed\n").unwrap();
    m.unmount();
    let store = m.header_store.clone().unwrap();
    let (c, st) = (s(&m.cipherdir).to_owned(), s(&store).to_owned());
    let dir = m.dir.path();
    std::fs::write(dir.join("new-pw"), "a new password\n").unwrap();
    std::fs::write(dir.join("pw"), format!("{PASSWORD}\n")).unwrap();
    let run = |args: &[&str]| {
        let (code, out, err) = cofferfs(args);
        assert_eq!(code, OK, "{args:?}: {out}{err}");
        out
    };
    let new_pw = s(&dir.join("new-pw")).to_owned();
    let pw = s(&dir.join("pw")).to_owned();

    let out = run(&[
        "passwd",
        "--header-store",
        &st,
        &c,
        "--new-passfile",
        &new_pw,
    ]);
    assert!(
        out.starts_with("Changed the password of key slot 0"),
        "{out}"
    );
    let out = run(&["rotate", "--header-store", &st, "--passfile", &new_pw, &c]);
    assert!(
        out.starts_with("Rotated the KEK: generation 1 -> 2, 1 file keys"),
        "{out}"
    );
    let out = run(&["fsck", "--header-store", &st, "--passfile", &new_pw, &c]);
    assert!(out.ends_with("clean\n"), "{out}");
    let out = run(&[
        "reencrypt",
        "--header-store",
        &st,
        "--passfile",
        &new_pw,
        &c,
        "--all",
    ]);
    assert!(
        out.ends_with("1 files re-encrypted, 0 left alone\n"),
        "{out}"
    );
    run(&["keys", "new-keyfile", s(&dir.join("kf"))]);
    let out = run(&[
        "keys",
        "add",
        "--header-store",
        &st,
        &c,
        "--passfile",
        &new_pw,
        "--keyfile",
        s(&dir.join("kf")),
    ]);
    assert!(out.starts_with("Added key slot 1 (keyfile"), "{out}");
    let out = run(&["keys", "list", "--header-store", &st, &c]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = run(&[
        "keys",
        "remove",
        "--header-store",
        &st,
        &c,
        "1",
        "--passfile",
        &new_pw,
    ]);
    assert_eq!(out, "Removed key slot 1.\n");
    // Back to the harness password, so the mount below opens.
    run(&[
        "passwd",
        "--header-store",
        &st,
        &c,
        "--passfile",
        &new_pw,
        "--new-passfile",
        &pw,
    ]);
    let out = run(&["info", "--header-store", &st, &c]);
    assert!(out.contains("kek generation:  2\n"), "{out}");
    assert_eq!(cofferfs_names(&m.cipherdir), ["cofferfs.volume"]);
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("doc")).unwrap(), b"managed\n");
}

#[test]
fn the_marker_is_hidden_and_cannot_be_created_through_the_mount() {
    let m = Mounted::with_header_store(&["--plaintext-names"], &[]);
    let marker = m.cipherdir.join("cofferfs.volume");
    let bytes = std::fs::read(&marker).unwrap();
    assert_eq!(sh(&m.mnt, "ls -A"), "");
    for name in ["cofferfs.volume", "cofferfs.db"] {
        let err = std::fs::write(m.path(name), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{name}");
        let err = std::fs::create_dir(m.path(name)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{name}");
    }
    // Reserved in the root only: a subdirectory may hold the name.
    std::fs::create_dir(m.path("sub")).unwrap();
    std::fs::write(m.path("sub/cofferfs.volume"), b"user data").unwrap();
    assert_eq!(
        std::fs::read(m.path("sub/cofferfs.volume")).unwrap(),
        b"user data"
    );
    assert_eq!(std::fs::read(&marker).unwrap(), bytes);
    assert!(!PathBuf::from(&m.cipherdir).join("cofferfs.db").exists());
}
