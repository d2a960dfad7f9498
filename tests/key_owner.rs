//! Issue 15 item 2: an unlink shreds a key row only when the entry removed is the row's
//! owner (`file_keys.owner`). The attacks copy a ciphertext file over another, or under
//! another name or directory, while the volume is unmounted (as `cp`, a sync tool's conflict
//! copy, or `rsync -a` without `-H` do); removing the copy must leave the original readable.

mod common;

use std::time::{Duration, Instant};

use common::damage::{cipher_path, header_id, key_row_ids};
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

/// The shred batch gathers for 50 ms: give it ample time to run.
fn let_shredder_run() {
    std::thread::sleep(Duration::from_millis(400));
}

fn owner_is_null(m: &Mounted, id: &str) -> bool {
    let conn = rusqlite::Connection::open(m.cipherdir.join("cofferfs.db")).unwrap();
    conn.query_row(
        "SELECT owner IS NULL FROM file_keys WHERE lower(hex(file_id)) = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn removing_a_copy_of_a_ciphertext_file_keeps_the_originals_key() {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::fs::write(m.path("a"), b"the original").unwrap();
    std::fs::write(m.path("b"), b"overwritten").unwrap();
    std::fs::write(m.path("dir/conflict"), b"overwritten too").unwrap();
    m.unmount();
    let a = cipher_path(&m.cipherdir, "/a");
    // `cp A B` over another file, and a duplicate in another directory.
    std::fs::copy(&a, cipher_path(&m.cipherdir, "/b")).unwrap();
    std::fs::copy(&a, cipher_path(&m.cipherdir, "/dir/conflict")).unwrap();
    let id = header_id(&a);
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"the original");
    std::fs::remove_file(m.path("b")).unwrap();
    std::fs::remove_file(m.path("dir/conflict")).unwrap();
    let_shredder_run();
    assert!(
        key_row_ids(&m.cipherdir).contains(&id),
        "the copy's unlink shredded a's key"
    );
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"the original");
    m.unmount();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"the original");
    // The original itself still shreds its key when it goes.
    std::fs::remove_file(m.path("a")).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while key_row_ids(&m.cipherdir).contains(&id) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !key_row_ids(&m.cipherdir).contains(&id),
        "a's own unlink shreds"
    );
}

#[test]
fn removing_the_copy_then_renaming_the_original_onto_its_name_keeps_the_key() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"keep me").unwrap();
    std::fs::write(m.path("b"), b"x").unwrap();
    m.unmount();
    let a = cipher_path(&m.cipherdir, "/a");
    std::fs::copy(&a, cipher_path(&m.cipherdir, "/b")).unwrap();
    let id = header_id(&a);
    m.mount(&[]);
    // Resolving a conflict copy: remove the copy, put the original under its name, at once
    // (within the shredder's gathering window).
    std::fs::remove_file(m.path("b")).unwrap();
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    let_shredder_run();
    assert!(key_row_ids(&m.cipherdir).contains(&id));
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"keep me");
    m.unmount();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"keep me");
}

#[test]
fn an_open_copy_removed_then_replaced_by_the_original_keeps_the_key() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"the original").unwrap();
    std::fs::write(m.path("b"), b"x").unwrap();
    std::fs::write(m.path("solo"), b"alone").unwrap();
    m.unmount();
    let a = cipher_path(&m.cipherdir, "/a");
    std::fs::copy(&a, cipher_path(&m.cipherdir, "/b")).unwrap();
    let id = header_id(&a);
    m.mount(&[]);
    // The copy is open while it is removed and the original takes its name; the deletion
    // decided at the copy's unlink runs at its last close, after the rename.
    let open = std::fs::File::open(m.path("b")).unwrap();
    std::fs::remove_file(m.path("b")).unwrap();
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    drop(open);
    let_shredder_run();
    assert!(key_row_ids(&m.cipherdir).contains(&id));
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"the original");
    // A file of its own removed while open still loses its key at the last close.
    let solo = header_id(&cipher_path_mounted(&m, "solo"));
    let open = std::fs::File::open(m.path("solo")).unwrap();
    std::fs::remove_file(m.path("solo")).unwrap();
    let_shredder_run();
    assert!(key_row_ids(&m.cipherdir).contains(&solo), "kept while open");
    drop(open);
    let until = Instant::now() + Duration::from_secs(10);
    while key_row_ids(&m.cipherdir).contains(&solo) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !key_row_ids(&m.cipherdir).contains(&solo),
        "shredded at the last close"
    );
}

/// The ciphertext path of `name` in the root of a mounted volume: the root blob with the same
/// inode number (the mount reports the backing inode numbers).
fn cipher_path_mounted(m: &Mounted, name: &str) -> std::path::PathBuf {
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(m.path(name)).unwrap());
    std::fs::read_dir(&m.cipherdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap()) == ino)
        .expect("the backing file of a mounted file has its inode number")
}

#[test]
fn renamed_files_keep_shredding_their_keys() {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("one"), b"1").unwrap();
    std::fs::write(m.path("two"), b"2").unwrap();
    std::fs::write(m.path("three"), b"3").unwrap();
    std::fs::write(m.path("four"), b"4").unwrap();
    // A keyless (empty) file renamed while open, written after: its row is for its new name.
    let f = std::fs::File::create(m.path("five")).unwrap();
    std::fs::rename(m.path("five"), m.path("d/five")).unwrap();
    std::io::Write::write_all(&mut &f, b"5").unwrap();
    drop(f);
    assert_eq!(rows_become(&m, 5), 5);
    std::fs::rename(m.path("one"), m.path("d/uno")).unwrap();
    std::fs::rename(m.path("two"), m.path("dos")).unwrap();
    std::fs::rename(m.path("d"), m.path("e")).unwrap();
    // RENAME_EXCHANGE through the renameat2 of `mv --exchange` is not everywhere: python.
    let ex = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); \
             r=l.renameat2(-100,sys.argv[1].encode(),-100,sys.argv[2].encode(),2); \
             sys.exit(0 if r==0 else ctypes.get_errno())",
        )
        .arg(m.path("three"))
        .arg(m.path("four"))
        .status()
        .unwrap();
    assert!(ex.success(), "renameat2 RENAME_EXCHANGE: {ex:?}");
    assert_eq!(std::fs::read(m.path("three")).unwrap(), b"4");
    m.unmount();
    m.mount(&[]);
    for p in ["e/uno", "dos", "three", "four", "e/five"] {
        std::fs::remove_file(m.path(p)).unwrap();
    }
    assert_eq!(
        rows_become(&m, 0),
        0,
        "every renamed file's unlink shredded its row"
    );
}

#[test]
fn a_hard_link_split_by_a_copy_keeps_the_key_for_the_owner() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"linked").unwrap();
    std::fs::hard_link(m.path("a"), m.path("b")).unwrap();
    m.unmount();
    // What `rsync -a` without -H makes of a hard link: two files carrying one id.
    let b = cipher_path(&m.cipherdir, "/b");
    let bytes = std::fs::read(&b).unwrap();
    std::fs::remove_file(&b).unwrap();
    std::fs::write(&b, bytes).unwrap();
    let id = header_id(&b);
    m.mount(&[]);
    std::fs::remove_file(m.path("b")).unwrap();
    let_shredder_run();
    assert!(key_row_ids(&m.cipherdir).contains(&id));
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"linked");
}

#[test]
fn migration_gives_duplicated_rows_no_owner() {
    let (_dir, c) = common::fixture_copy("v2");
    let hello = {
        let vol = common::open_volume(&c, common::FIXTURE_PASSWORD.as_bytes()).unwrap();
        c.join(
            cofferfs::volume::reencrypt::resolve(&vol, std::path::Path::new("/hello.txt")).unwrap(),
        )
    };
    let exact = {
        let vol = common::open_volume(&c, common::FIXTURE_PASSWORD.as_bytes()).unwrap();
        c.join(
            cofferfs::volume::reencrypt::resolve(&vol, std::path::Path::new("/exact.bin")).unwrap(),
        )
    };
    std::fs::copy(&hello, &exact).unwrap();
    let id = header_id(&hello);
    let mut m = Mounted::adopt(c);
    m.password = common::FIXTURE_PASSWORD.to_owned();
    m.mount(&[]);
    assert!(
        owner_is_null(&m, &id),
        "a row two entries carry has no owner"
    );
    std::fs::remove_file(m.path("exact.bin")).unwrap();
    let_shredder_run();
    assert_eq!(
        std::fs::read(m.path("hello.txt")).unwrap(),
        b"hello, cofferfs v2\n"
    );
    m.unmount();
    let n = key_row_ids(&m.cipherdir).len();
    m.mount(&[]);
    // The nested file is owned: its unlink shreds.
    std::fs::remove_file(m.path("dir/nested.bin")).unwrap();
    assert_eq!(rows_become(&m, n - 1), n - 1);
}

#[test]
fn on_a_plaintext_names_volume_removing_a_copy_keeps_the_originals_key() {
    let mut m = Mounted::with(&["--plaintext-names"], &[]);
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("a"), b"plain original").unwrap();
    std::fs::write(m.path("d/copy"), b"x").unwrap();
    m.unmount();
    std::fs::copy(m.cipherdir.join("a"), m.cipherdir.join("d/copy")).unwrap();
    let id = header_id(&m.cipherdir.join("a"));
    m.mount(&[]);
    std::fs::remove_file(m.path("d/copy")).unwrap();
    let_shredder_run();
    assert!(key_row_ids(&m.cipherdir).contains(&id));
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"plain original");
    std::fs::rename(m.path("a"), m.path("d/a")).unwrap();
    std::fs::remove_file(m.path("d/a")).unwrap();
    // What stays is the row of the file the copy overwrote (an orphan since the copy).
    assert_eq!(
        rows_become(&m, 1),
        1,
        "the renamed original's unlink shreds"
    );
    assert!(!key_row_ids(&m.cipherdir).contains(&id));
}
