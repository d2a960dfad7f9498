//! Review of format v3's key-row owners: `reencrypt` deletes the old key row by file id alone,
//! without the owner check an unlink makes, so re-encrypting a copy of a ciphertext file (a
//! sync tool's duplicate, `cp` in the cipherdir, a hard link split by `rsync -a` without `-H`)
//! destroys the original's key. These tests fail until `reencrypt_file` only shreds a row its
//! entry owns.

mod common;

use common::damage::{cipher_path, header_id, key_row_ids};
use common::mount::{Mounted, cofferfs};

#[test]
fn reencrypting_a_copy_keeps_the_originals_key() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"the original").unwrap();
    std::fs::write(m.path("b"), b"x").unwrap();
    m.unmount();
    let a = cipher_path(&m.cipherdir, "/a");
    // `cp A B` in the cipherdir: b now carries a's file id (a's row is owned by a).
    std::fs::copy(&a, cipher_path(&m.cipherdir, "/b")).unwrap();
    let id = header_id(&a);
    let (code, out, err) = cofferfs(&["reencrypt", m.cipherdir.to_str().unwrap(), "/b"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        key_row_ids(&m.cipherdir).contains(&id),
        "re-encrypting the copy b deleted the key row of a, which b does not own"
    );
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"the original");
    assert_eq!(
        std::fs::read(m.path("a")).map_err(|e| e.to_string()),
        Ok(b"the original".to_vec())
    );
}

#[test]
fn reencrypt_all_keeps_both_halves_of_a_split_hard_link() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"linked").unwrap();
    std::fs::hard_link(m.path("a"), m.path("b")).unwrap();
    m.unmount();
    // What `rsync -a` without -H makes of a hard link: two files carrying one id.
    let b = cipher_path(&m.cipherdir, "/b");
    let bytes = std::fs::read(&b).unwrap();
    std::fs::remove_file(&b).unwrap();
    std::fs::write(&b, bytes).unwrap();
    let (code, out, err) = cofferfs(&["reencrypt", m.cipherdir.to_str().unwrap(), "--all"]);
    m.mount(&[]);
    let read = |p: &str| std::fs::read(m.path(p)).map_err(|e| e.to_string());
    assert_eq!(
        (read("a"), read("b")),
        (Ok(b"linked".to_vec()), Ok(b"linked".to_vec())),
        "reencrypt --all (exit {code}): {out}{err}"
    );
}
