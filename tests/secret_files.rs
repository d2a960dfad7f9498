//! Files that hold or guard secrets (issue 15, item 9): `init` makes a new cipherdir private
//! (0700) whatever the umask and leaves an existing one's mode alone; a passfile or key file
//! that others may read works but draws a warning, as ssh warns about a private key.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::mount::{CHEAP_KDF, PASSWORD, cofferfs};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn init_args(c: &Path) -> Vec<&str> {
    let mut args = vec!["init"];
    args.extend_from_slice(&CHEAP_KDF);
    args.push(c.to_str().unwrap());
    args
}

#[test]
fn init_makes_a_new_cipherdir_private_and_keeps_an_existing_ones_mode() {
    let dir = tempfile::tempdir().unwrap();
    // The child inherits our umask; make it the permissive usual one.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let c = dir.path().join("new");
    let (code, out, err) = cofferfs(&init_args(&c));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mode(&c), 0o700);

    let c = dir.path().join("existing");
    std::fs::create_dir(&c).unwrap();
    std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (code, out, err) = cofferfs(&init_args(&c));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mode(&c), 0o750);
}

#[test]
fn a_passfile_or_key_file_others_can_read_works_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    common::mount::init_volume(&c, &[]);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let kf = dir.path().join("kf");
    let (code, out, err) = cofferfs(&["keys", "new-keyfile", kf.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = cofferfs(&[
        "keys",
        "add",
        "--passfile",
        pw.to_str().unwrap(),
        "--keyfile",
        kf.to_str().unwrap(),
        c.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !err.contains("warning"),
        "private files draw no warning: {err}"
    );

    let pw2 = dir.path().join("pw2");
    std::fs::write(&pw2, "another password\n").unwrap();
    std::fs::set_permissions(&pw2, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (cs, pws, kfs, pw2s) = (
        c.to_str().unwrap(),
        pw.to_str().unwrap(),
        kf.to_str().unwrap(),
        pw2.to_str().unwrap(),
    );
    let unlock_with_passfile = ["fsck", "--passfile", pws, cs];
    let unlock_with_keyfile = [
        "keys",
        "add",
        "--unlock-keyfile",
        kfs,
        "--new-passfile",
        pw2s,
        "--argon2-memory",
        "1024",
        "--argon2-time",
        "1",
        "--argon2-lanes",
        "1",
        cs,
    ];
    for (file, what, args) in [
        (&pw, "passfile", &unlock_with_passfile[..]),
        (&kf, "key file", &unlock_with_keyfile[..]),
    ] {
        for m in [0o644, 0o640, 0o606] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(m)).unwrap();
            let (code, out, err) = cofferfs(args);
            assert_eq!(code, 0, "{what} mode {m:o}: {out}{err}");
            assert!(
                err.contains(&format!("warning: {what} {}", file.display()))
                    && err.contains(&format!("mode {m:04o}")),
                "{what} mode {m:o}: {err}"
            );
        }
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o400)).unwrap();
        let (code, out, err) = cofferfs(args);
        assert_eq!(code, 0, "{out}{err}");
        assert!(!err.contains(&format!("warning: {what}")), "{err}");
    }
}
