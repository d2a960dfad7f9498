//! Extended attributes through a real mount: the `user.` namespace round-trips with the usual
//! flags and errors and is stored encrypted; every other namespace is refused with
//! `EOPNOTSUPP` on get, set and remove alike, so programs that probe them (coreutils `ls -l`
//! asks every file for `security.selinux` and `system.posix_acl_access`) learn once per mount
//! that the filesystem has none, as they do on other filesystems without them.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use rustix::fs::{XattrFlags, getxattr, listxattr, removexattr, setxattr};
use rustix::io::Errno;

use common::mount::Mounted;

fn names(path: &std::path::Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = listxattr(path, &mut buf).unwrap();
    let mut v: Vec<String> = buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    v.sort();
    v
}

/// getxattr(2) with a zero size: the value's length (rustix clamps its answer to the buffer).
fn size_of_value(path: &std::path::Path, name: &str) -> isize {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call; a zero size reads nothing.
    unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) }
}

#[test]
fn user_attributes_round_trip_with_posix_flags_and_errors() {
    let m = Mounted::new();
    let p = m.path("f");
    std::fs::write(&p, b"content").unwrap();

    setxattr(&p, "user.colour", b"deep blue", XattrFlags::CREATE).unwrap();
    setxattr(&p, "user.empty", b"", XattrFlags::empty()).unwrap();
    assert_eq!(
        setxattr(&p, "user.colour", b"x", XattrFlags::CREATE),
        Err(Errno::EXIST)
    );
    assert_eq!(
        setxattr(&p, "user.absent", b"x", XattrFlags::REPLACE),
        Err(Errno::NODATA)
    );

    // Size query, exact buffer, short buffer.
    assert_eq!(size_of_value(&p, "user.colour"), 9);
    let mut buf = [0u8; 9];
    assert_eq!(getxattr(&p, "user.colour", &mut buf), Ok(9));
    assert_eq!(&buf, b"deep blue");
    let mut short = [0u8; 4];
    assert_eq!(getxattr(&p, "user.colour", &mut short), Err(Errno::RANGE));
    assert_eq!(getxattr(&p, "user.empty", &mut buf), Ok(0));
    assert_eq!(getxattr(&p, "user.absent", &mut buf), Err(Errno::NODATA));

    setxattr(&p, "user.colour", b"red", XattrFlags::REPLACE).unwrap();
    assert_eq!(getxattr(&p, "user.colour", &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"red");
    assert_eq!(names(&p), ["user.colour", "user.empty"]);

    removexattr(&p, "user.empty").unwrap();
    assert_eq!(removexattr(&p, "user.empty"), Err(Errno::NODATA));
    assert_eq!(names(&p), ["user.colour"]);

    // Directories carry attributes too, and everything survives a remount.
    std::fs::create_dir(m.path("d")).unwrap();
    setxattr(m.path("d"), "user.dir", b"1", XattrFlags::empty()).unwrap();
    let mut m = m;
    m.unmount();
    m.mount(&[]);
    assert_eq!(getxattr(&p, "user.colour", &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"red");
    assert_eq!(names(&m.path("d")), ["user.dir"]);

    // The backing objects hold neither the names nor the values in clear: there are two backing
    // attributes, both under cofferfs's own prefix.
    let backing = backing_attributes(&m.cipherdir);
    assert_eq!(backing.len(), 2, "{backing:?}");
    for (name, value) in &backing {
        assert!(name.starts_with("user.cofferfs."), "{name}");
        for clear in ["colour", "dir"] {
            assert!(!name.contains(clear), "{name}");
        }
        assert!(!value.windows(3).any(|w| w == b"red"), "{name}");
    }
}

/// Every extended attribute on the objects under `dir` (not following symlinks).
fn backing_attributes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut buf = vec![0u8; 65_536];
        let n = rustix::fs::llistxattr(&path, &mut buf).unwrap();
        for name in buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let name = String::from_utf8(name.to_vec()).unwrap();
            let mut value = vec![0u8; 65_536];
            let len = rustix::fs::lgetxattr(&path, name.as_str(), &mut value).unwrap();
            value.truncate(len);
            out.push((name, value));
        }
        if path.is_dir() && !path.is_symlink() {
            out.extend(backing_attributes(&path));
        }
    }
    out
}

/// A value the kernel accepts for `name` (it validates capabilities and ACLs before asking
/// the filesystem), so a refusal comes from cofferfs.
fn valid_value(name: &str) -> Vec<u8> {
    if name == "security.capability" {
        // vfs_cap_data revision 2, no capabilities.
        let mut v = vec![0, 0, 0, 2];
        v.resize(20, 0);
        return v;
    }
    if name.starts_with("system.posix_acl") {
        // The kernel's little-endian posix_acl_xattr layout: version 2, then (tag u16,
        // perm u16, id u32) entries USER_OBJ rw-, GROUP_OBJ r--, OTHER r--.
        #[rustfmt::skip]
        let v = vec![
            2, 0, 0, 0,
            0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
            0x04, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
            0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
        ];
        return v;
    }
    b"value".to_vec()
}

#[test]
fn other_namespaces_are_refused_alike_on_get_set_and_remove() {
    let m = Mounted::new();
    let p = m.path("f");
    std::fs::write(&p, b"x").unwrap();
    std::fs::create_dir(m.path("d")).unwrap();
    let mut buf = [0u8; 64];
    for target in [p.clone(), m.path("d")] {
        for name in [
            "security.selinux",
            "security.capability",
            "system.posix_acl_access",
            "system.posix_acl_default",
            "trusted.overlay.opaque",
        ] {
            assert_eq!(
                getxattr(&target, name, &mut buf),
                Err(Errno::OPNOTSUPP),
                "get {name}"
            );
            if target.is_file() && name == "system.posix_acl_default" {
                // The kernel answers itself for a default ACL on a non-directory: EACCES on
                // set, success on remove.
                continue;
            }
            assert_eq!(
                setxattr(&target, name, &valid_value(name), XattrFlags::empty()),
                Err(Errno::OPNOTSUPP),
                "set {name}"
            );
            assert_eq!(
                removexattr(&target, name),
                Err(Errno::OPNOTSUPP),
                "remove {name}"
            );
        }
    }
    // Refusing them breaks nothing that ordinary programs do: a long listing, a copy that
    // preserves everything it can, and executing a file (the kernel asks for
    // security.capability at exec).
    std::fs::write(m.path("run.sh"), b"#!/bin/sh\necho ran\n").unwrap();
    let out = common::mount::sh(
        &m.mnt,
        "chmod 755 run.sh && ls -l f d run.sh >/dev/null && cp -a f f2 && cmp f f2 && ./run.sh",
    );
    assert_eq!(out.trim(), "ran");
}

/// A volume whose file `f` holds `content` and the attribute `user.colour`, stored by a normal
/// mount, then mounted `--no-xattr`.
fn coloured_file_under_no_xattr(content: &[u8]) -> (Mounted, std::path::PathBuf) {
    let mut m = Mounted::new();
    let p = m.path("f");
    std::fs::write(&p, content).unwrap();
    setxattr(&p, "user.colour", b"deep blue", XattrFlags::CREATE).unwrap();
    m.unmount();
    m.mount(&["--no-xattr"]);
    (m, p)
}

/// Mounted again without the option (`m` unmounted), `user.colour` of `p` reads as stored.
fn colour_is_back(m: &mut Mounted, p: &std::path::Path) {
    m.mount(&[]);
    let mut buf = [0u8; 64];
    assert_eq!(getxattr(p, "user.colour", &mut buf), Ok(9));
    assert_eq!(&buf[..9], b"deep blue");
}

/// `mount --no-xattr` (issue 16): every xattr call fails with `EOPNOTSUPP`, and the kernel
/// learns it from the first answer, so it stops asking the daemon (before the first write to a
/// file and at each `chown` it asks for `security.capability`: two round trips per file that
/// tar extracts). Attributes stored before are kept and come back without the option.
#[test]
fn without_xattrs_the_kernel_stops_asking_and_stored_attributes_come_back() {
    let (mut m, p) = coloured_file_under_no_xattr(b"x");
    let mut buf = [0u8; 64];
    assert_eq!(getxattr(&p, "user.colour", &mut buf), Err(Errno::OPNOTSUPP));
    assert_eq!(listxattr(&p, &mut buf), Err(Errno::OPNOTSUPP));
    assert_eq!(
        setxattr(&p, "user.other", b"1", XattrFlags::empty()),
        Err(Errno::OPNOTSUPP)
    );
    assert_eq!(removexattr(&p, "user.colour"), Err(Errno::OPNOTSUPP));

    // The kernel answers every further call itself: they return with the daemon stopped.
    let f = std::fs::File::open(&p).unwrap();
    let answered = common::stopped::returns_while_stopped(&m, Duration::from_secs(5), move || {
        let mut buf = [0u8; 64];
        let results = [
            rustix::fs::fgetxattr(&f, "security.capability", &mut buf).map(drop),
            rustix::fs::fgetxattr(&f, "user.colour", &mut buf).map(drop),
            rustix::fs::flistxattr(&f, &mut buf).map(drop),
            rustix::fs::fsetxattr(&f, "user.other", b"1", XattrFlags::empty()),
            rustix::fs::fremovexattr(&f, "user.colour"),
        ];
        // Handed back to be closed with the daemon running: a close sends a FLUSH.
        (results, f)
    });
    let (answered, f) = answered.expect("an xattr call waited for the stopped daemon");
    drop(f);
    assert!(
        answered.iter().all(|r| *r == Err(Errno::OPNOTSUPP)),
        "{answered:?}"
    );

    // What programs do still works: tar extracting with owners (chown of every file), a copy
    // that preserves what it can, a long listing, executing a file.
    let out = common::mount::sh(
        &m.mnt,
        "mkdir src && echo a > src/a && printf '#!/bin/sh\\necho ran\\n' > src/run.sh \
         && chmod 755 src/run.sh && chown 1:2 src/a && tar -cf ../t.tar src && rm -r src \
         && tar -xpf ../t.tar && stat -c %u:%g src/a && cp -a src copy && cmp src/a copy/a \
         && ls -l copy >/dev/null && ./copy/run.sh",
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1:2", "ran"]);
    m.unmount();

    colour_is_back(&mut m, &p);
}

/// An online `reencrypt` rewrites a file through the mount, and a `--no-xattr` mount cannot
/// carry its attributes across: it is refused with a clear error (exit 15) before anything
/// changes, and the attribute is still there on a mount without the option. (It used to copy
/// the file without them and rename the copy over it: the attributes were gone.)
#[test]
fn online_reencrypt_on_a_no_xattr_mount_is_refused_and_keeps_the_attributes() {
    let (mut m, p) = coloured_file_under_no_xattr(b"content");
    let ino = std::fs::metadata(&p).unwrap().ino();
    let c = m.cipherdir.to_str().unwrap().to_owned();
    let (code, out, err) =
        common::mount::run_with_stdin(&["reencrypt", &c, "/f"], &format!("{}\n", m.password));
    assert_eq!(code, 15, "{out}{err}");
    assert!(err.contains("--no-xattr"), "{err}");
    assert_eq!(
        std::fs::metadata(&p).unwrap().ino(),
        ino,
        "the file was rewritten"
    );
    assert_eq!(std::fs::read(&p).unwrap(), b"content");
    m.unmount();

    colour_is_back(&mut m, &p);
}
