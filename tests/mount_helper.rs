//! The mount-helper form: `mount -t fuse.cofferfs`, an fstab line (`mount -T FILE`) and
//! `mount.fuse3 cofferfs#CIPHERDIR`, each through the real util-linux mount and libfuse's
//! mount.fuse3, which run `cofferfs CIPHERDIR MNT -o OPTIONS`. Needs root and fuse3.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::mount::{Mounted, bin, init_volume, is_mounted};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A volume (test password) with a passfile for it and an empty mountpoint.
struct Setup {
    dir: tempfile::TempDir,
    cipherdir: PathBuf,
    mnt: PathBuf,
    passfile: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cofferfs-helper")
            .tempdir_in("/tmp")
            .unwrap();
        let cipherdir = dir.path().join("cipher");
        init_volume(&cipherdir, &[]);
        let mnt = dir.path().join("plain");
        std::fs::create_dir(&mnt).unwrap();
        let passfile = dir.path().join("pass");
        std::fs::write(&passfile, format!("{}\n", common::mount::PASSWORD)).unwrap();
        Setup {
            dir,
            cipherdir,
            mnt,
            passfile,
        }
    }

    /// Mounts the volume with `cofferfs mount -f` and returns the file's content.
    fn read_back(&self, rel: &str) -> String {
        let mut m = Mounted::adopt(self.cipherdir.clone());
        m.mount(&[]);
        let got = std::fs::read_to_string(m.path(rel)).unwrap();
        m.unmount();
        got
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// Waits until the daemon of `cipherdir` has let go of the volume (umount(8) does not wait).
fn wait_released(cipherdir: &Path) {
    let probe = cofferfs::volume::lock_probe_path(cipherdir);
    for _ in 0..200 {
        let f = std::fs::File::open(&probe).unwrap();
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the daemon did not let go of {}", cipherdir.display());
}

/// Runs `sh -c script` with `env` in a private mount namespace; returns its stdout, failing
/// the test when the script fails.
fn in_private_mount_namespace(script: &str, env: &[(&str, &Path)]) -> String {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{script}\n{stdout}{stderr}");
    stdout.into_owned()
}

/// `mount -t fuse.cofferfs C M -o passfile=…,allow_other` and an fstab line through
/// `mount -T FSTAB M` (its extpass command holds spaces, as fstab's `\040`, and a comma, in
/// libmount's double quotes): mount(8) runs mount.fuse3 with a sanitized PATH, so `cofferfs` must be
/// in a system directory. The test runs in a private mount namespace where a directory
/// holding the binary under test is bound over /usr/local/sbin (nothing outside changes).
#[test]
fn mount_t_fuse_cofferfs_and_an_fstab_line_mount_read_write_and_unmount() {
    let t = Setup::new();
    let bindir = t.dir.path().join("bin");
    std::fs::create_dir(&bindir).unwrap();
    std::os::unix::fs::symlink(bin(), bindir.join("cofferfs")).unwrap();
    let fstab = t.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# cofferfs test\n{} {} fuse.cofferfs extpass=\"sed\\040-n\\0401,1p\\040{}\",allow_other,noatime,nofail,_netdev,x-systemd.automount,idle=1h 0 0\n",
            s(&t.cipherdir),
            s(&t.mnt),
            s(&t.passfile)
        ),
    )
    .unwrap();
    let script = r#"
set -eu
trap 'umount -l "$M" 2>/dev/null || true' EXIT
mount --bind "$BINDIR" /usr/local/sbin
mount -t fuse.cofferfs "$C" "$M" -o "passfile=$P,allow_other"
grep " $M fuse.cofferfs " /proc/mounts | grep -q allow_other
echo "written through mount -t" > "$M/one"
cat "$M/one"
umount "$M"
echo "umount ok"
"#;
    let env = [
        ("BINDIR", bindir.as_path()),
        ("C", &t.cipherdir),
        ("M", &t.mnt),
        ("P", &t.passfile),
        ("FSTAB", &fstab),
    ];
    let stdout = in_private_mount_namespace(script, &env);
    assert_eq!(stdout, "written through mount -t\numount ok\n");
    wait_released(&t.cipherdir);

    let script = r#"
set -eu
trap 'umount -l "$M" 2>/dev/null || true' EXIT
mount --bind "$BINDIR" /usr/local/sbin
mount -T "$FSTAB" "$M"
grep " $M fuse.cofferfs " /proc/mounts | grep -q noatime
cat "$M/one"
echo "written through fstab" > "$M/two"
umount "$M"
"#;
    let stdout = in_private_mount_namespace(script, &env);
    assert_eq!(stdout, "written through mount -t\n");
    wait_released(&t.cipherdir);
    assert_eq!(t.read_back("two"), "written through fstab\n");
    assert_eq!(t.read_back("one"), "written through mount -t\n");
}

/// The classic `PROGRAM#SOURCE` form of mount.fuse3 (`-t fuse`), with the full path of the
/// binary: returns once the mount is ready, and umount(8) ends the daemon.
#[test]
fn mount_fuse3_program_hash_cipherdir_form_mounts() {
    let t = Setup::new();
    let source = format!("{}#{}", bin(), s(&t.cipherdir));
    let out = Command::new("mount.fuse3")
        .args([
            &source,
            s(&t.mnt),
            "-o",
            &format!("passfile={}", s(&t.passfile)),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ready when mount.fuse3 returns: no waiting.
    assert!(is_mounted(&t.mnt));
    std::fs::write(t.mnt.join("f"), b"hash form").unwrap();
    assert_eq!(std::fs::read(t.mnt.join("f")).unwrap(), b"hash form");
    let st = Command::new("umount").arg(&t.mnt).status().unwrap();
    assert!(st.success());
    wait_released(&t.cipherdir);
    assert_eq!(t.read_back("f"), "hash form");
}

/// A bad option or a missing passfile fails the mount(8) call with cofferfs's own message;
/// nothing is mounted.
#[test]
fn helper_form_errors_reach_mount_and_mount_nothing() {
    let t = Setup::new();
    let source = format!("{}#{}", bin(), s(&t.cipherdir));
    for (opts, code, says) in [
        ("passfile=/nonexistent/pass".to_owned(), 10, "password"),
        (format!("passfile={},bogus", s(&t.passfile)), 2, "bogus"),
        ("passfile".to_owned(), 2, "needs a value"),
    ] {
        let out = Command::new("mount.fuse3")
            .args([&source, s(&t.mnt), "-o", &opts])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{opts}: {err}");
        assert!(err.contains(says), "{opts}: {err}");
        assert!(!is_mounted(&t.mnt), "{opts}");
    }
}

/// A mistyped subcommand still gets clap's suggestion, not the helper form.
#[test]
fn a_mistyped_subcommand_is_not_taken_for_the_helper_form() {
    let out = Command::new(bin()).args(["rotat", "x"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'rotate'"), "{err}");
}
