//! Missing names are cached like present ones (issue 16): a LOOKUP that finds nothing answers
//! node id 0 with the entry's time to live, so the kernel answers the next `stat` of the name
//! itself instead of asking the daemon again (compilers, shells and Python try many names
//! that are not there). What the kernel learns through the mount itself (a create, mkdir,
//! symlink, link or rename onto such a name) shows at once; only a name made behind the
//! mount's back stays hidden for the time to live, as the single-writer rule says.
//! Real mounts on plaintext-names volumes, so the test can make a name behind the mount.

mod common;

use std::io::ErrorKind;
use std::path::Path;

use common::mount::Mounted;

fn missing(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_err_and(|e| e.kind() == ErrorKind::NotFound)
}

#[test]
fn a_missing_name_is_remembered_by_the_kernel() {
    let m = Mounted::with(&["--plaintext-names"], &[]);
    let cipher = m.cipherdir.clone();
    assert!(missing(&m.path("cached")));
    assert!(missing(&m.path("uncached")));
    std::fs::write(cipher.join("cached"), b"").unwrap();
    std::fs::write(cipher.join("other"), b"").unwrap();
    // Looked up before it was made behind the mount: the kernel keeps the answer.
    assert!(missing(&m.path("cached")));
    // Never looked up: the daemon is asked and finds it (the cache is per name).
    assert!(m.path("other").symlink_metadata().is_ok());
}

#[test]
fn what_the_mount_itself_puts_on_a_missing_name_shows_at_once() {
    let m = Mounted::with(&["--plaintext-names"], &[]);
    let names = ["file", "dir", "sym", "link", "moved"];
    for n in names {
        assert!(missing(&m.path(n)));
    }
    std::fs::write(m.path("file"), b"made").unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::os::unix::fs::symlink("file", m.path("sym")).unwrap();
    std::fs::hard_link(m.path("file"), m.path("link")).unwrap();
    std::fs::write(m.path("src"), b"moved here").unwrap();
    std::fs::rename(m.path("src"), m.path("moved")).unwrap();

    assert_eq!(std::fs::read(m.path("file")).unwrap(), b"made");
    assert!(m.path("dir").is_dir());
    assert_eq!(std::fs::read(m.path("sym")).unwrap(), b"made");
    assert_eq!(std::fs::read(m.path("link")).unwrap(), b"made");
    assert_eq!(std::fs::read(m.path("moved")).unwrap(), b"moved here");
    assert!(missing(&m.path("src")));

    // And gone again once removed through the mount.
    std::fs::remove_file(m.path("file")).unwrap();
    assert!(missing(&m.path("file")));
    std::fs::write(m.path("file"), b"again").unwrap();
    assert_eq!(std::fs::read(m.path("file")).unwrap(), b"again");
}
