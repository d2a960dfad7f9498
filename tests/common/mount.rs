//! A real mount for integration tests: a fresh volume, `cofferfs mount -f` as a child
//! process, and an unmount in `Drop` (with `fusermount3 -uz` as the fallback) so a failing
//! test never leaves a mount behind. Tests may run in parallel: every mount has its own dirs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse";

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cofferfs")
}

/// Runs `cofferfs ARGS` with the test password on stdin; returns (status, stdout, stderr).
pub fn cofferfs(args: &[&str]) -> (i32, String, String) {
    cofferfs_with(args, PASSWORD)
}

/// Runs `cofferfs ARGS` with `password` on stdin; returns (status, stdout, stderr).
pub fn cofferfs_with(args: &[&str], password: &str) -> (i32, String, String) {
    run_with_stdin(args, &format!("{password}\n"))
}

/// Starts `program ARGS` with exactly `stdin` written to its standard input (then closed),
/// its output piped: for commands a test runs side by side or watches while they run.
pub fn spawn_with_stdin(program: &str, args: &[&str], stdin: &str) -> Child {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The command may exit before reading its input: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child
}

/// Runs `cofferfs ARGS` with exactly `stdin` on its standard input; returns (status, stdout,
/// stderr).
pub fn run_with_stdin(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cofferfs");
    // The command may exit before reading its input (e.g. a bad mountpoint): a broken pipe
    // is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Cheap Argon2id parameters for test volumes: the defaults take seconds in a debug build.
pub const CHEAP_KDF: [&str; 6] = [
    "--argon2-memory",
    "1024",
    "--argon2-time",
    "1",
    "--argon2-lanes",
    "1",
];

/// Creates a volume at `cipherdir` with cheap Argon2 parameters and extra `init` flags.
pub fn init_volume(cipherdir: &Path, extra: &[&str]) {
    let c = cipherdir.to_str().unwrap();
    let mut args = vec!["init"];
    args.extend_from_slice(&CHEAP_KDF);
    args.extend_from_slice(extra);
    args.push(c);
    let (code, out, err) = cofferfs(&args);
    assert_eq!(code, 0, "init failed: {out}{err}");
}

/// True when `mnt` is a mount point in /proc/mounts.
pub fn is_mounted(mnt: &Path) -> bool {
    let mnt = mnt.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(mnt.as_str()))
}

/// A mounted test volume.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub cipherdir: PathBuf,
    pub mnt: PathBuf,
    /// The header store when it is kept outside the cipherdir; `mount` passes it on.
    pub header_store: Option<PathBuf>,
    /// The volume's password, fed to `mount` on stdin.
    pub password: String,
    daemon: Option<Child>,
}

impl Mounted {
    /// A new volume (encrypted names) mounted in the foreground.
    pub fn new() -> Self {
        Self::with(&[], &[])
    }

    /// A new volume with extra `init` flags and `mount` flags.
    pub fn with(init_flags: &[&str], mount_flags: &[&str]) -> Self {
        Self::build(init_flags, mount_flags, false)
    }

    /// A new volume whose header store is `keys/store.db` in the test dir, outside the
    /// cipherdir (`init --header-store`), mounted with `--header-store`.
    pub fn with_header_store(init_flags: &[&str], mount_flags: &[&str]) -> Self {
        Self::build(init_flags, mount_flags, true)
    }

    fn build(init_flags: &[&str], mount_flags: &[&str], external_store: bool) -> Self {
        let dir = temp_dir();
        let cipherdir = dir.path().join("cipher");
        let mut m = Self::unmounted(dir, cipherdir, None);
        let mut flags = init_flags.to_vec();
        if external_store {
            let keys = m.dir.path().join("keys");
            std::fs::create_dir(&keys).unwrap();
            m.header_store = Some(keys.join("store.db"));
            flags.extend([
                "--header-store",
                m.header_store.as_ref().unwrap().to_str().unwrap(),
            ]);
        }
        init_volume(&m.cipherdir, &flags);
        m.mount(mount_flags);
        m
    }

    /// An existing cipherdir (e.g. a copy), not mounted yet: call `mount`.
    pub fn adopt(cipherdir: PathBuf) -> Self {
        Self::unmounted(temp_dir(), cipherdir, None)
    }

    /// An existing cipherdir and the header store kept outside it, not mounted yet.
    pub fn adopt_with_store(cipherdir: PathBuf, header_store: PathBuf) -> Self {
        Self::unmounted(temp_dir(), cipherdir, Some(header_store))
    }

    /// A copy of the committed fixture `tests/fixtures/<name>`, mounted with `flags`.
    pub fn fixture(name: &str, flags: &[&str]) -> Self {
        let dir = temp_dir();
        let cipherdir = dir.path().join("cipher");
        super::copy_fixture(name, &cipherdir);
        let mut m = Self::unmounted(dir, cipherdir, None);
        m.password = super::FIXTURE_PASSWORD.to_owned();
        m.mount(flags);
        m
    }

    /// `cipherdir` with an empty mountpoint in `dir`, not mounted yet.
    fn unmounted(
        dir: tempfile::TempDir,
        cipherdir: PathBuf,
        header_store: Option<PathBuf>,
    ) -> Self {
        let mnt = dir.path().join("plain");
        std::fs::create_dir(&mnt).unwrap();
        Mounted {
            cipherdir,
            dir,
            mnt,
            header_store,
            password: PASSWORD.to_owned(),
            daemon: None,
        }
    }

    /// Mounts the volume again (after `unmount`).
    pub fn mount(&mut self, flags: &[&str]) {
        self.mount_via(&[], flags);
    }

    /// Mounts with the daemon started through `launcher` (a command that runs its
    /// arguments, e.g. `["prlimit", "--nofile=128:20000", "--"]`); empty: directly.
    pub fn mount_via(&mut self, launcher: &[&str], flags: &[&str]) {
        assert!(self.daemon.is_none(), "already mounted");
        let mut args: Vec<&str> = launcher.to_vec();
        args.extend_from_slice(&[bin(), "mount", "-f"]);
        if let Some(store) = &self.header_store {
            args.extend(["--header-store", store.to_str().unwrap()]);
        }
        args.extend_from_slice(flags);
        let (c, m) = (self.cipherdir.to_str().unwrap(), self.mnt.to_str().unwrap());
        args.extend_from_slice(&[c, m]);
        let mut child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn mount");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{}\n", self.password).as_bytes())
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&self.mnt) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("mount exited early: {status}");
            }
            assert!(Instant::now() < deadline, "mount did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemon = Some(child);
    }

    /// The daemon's process id, while mounted.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmounts with `cofferfs umount` and waits for the daemon to exit cleanly.
    pub fn unmount(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        let (code, out, err) = cofferfs(&["umount", self.mnt.to_str().unwrap()]);
        assert_eq!(code, 0, "umount failed: {out}{err}");
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "daemon did not exit cleanly: {status:?}"
        );
    }

    /// Kills the daemon with SIGKILL (a crash), leaving the dead mount for `cleanup_dead`.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends `sig` to the daemon and waits for it to unmount and exit cleanly.
    pub fn signal_and_wait(&mut self, sig: i32) {
        let mut child = self.daemon.take().expect("mounted");
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::from_named_raw(sig).unwrap(),
        )
        .unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "daemon did not exit cleanly: {status:?}"
        );
    }

    /// Removes a mount whose daemon is gone.
    pub fn cleanup_dead(&self) {
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// A temp dir under /tmp for one mounted volume.
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cofferfs-test")
        .tempdir_in("/tmp")
        .unwrap()
}

/// Waits for `child` at most `t`.
pub fn wait_timeout(child: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + t;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new(bin()).arg("umount").arg(&self.mnt).status();
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mnt) {
            self.cleanup_dead();
        }
    }
}

/// Runs a shell command line in `dir`; panics with its output on failure.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "command failed: {script}\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads every file of a mounted copy of `tests/fixtures/v2` and checks it holds what the
/// fixture was made with (see `tests/fixture_v2.rs`).
pub fn check_v2_fixture_contents(m: &Mounted) {
    assert_eq!(
        std::fs::read(m.path("hello.txt")).unwrap(),
        b"hello, cofferfs v2\n"
    );
    let nested: Vec<u8> = (0..10000u32).map(|i| ((i * 7) % 256) as u8).collect();
    assert_eq!(std::fs::read(m.path("dir/nested.bin")).unwrap(), nested);
    assert_eq!(
        std::fs::read_link(m.path("link")).unwrap().to_str(),
        Some("dir/nested.bin")
    );
    assert_eq!(std::fs::read(m.path(&"L".repeat(200))).unwrap(), b"long");
    let exact: Vec<u8> = (0..8192u32).map(|i| ((i * 13) % 256) as u8).collect();
    assert_eq!(std::fs::read(m.path("exact.bin")).unwrap(), exact);
    let mut sparse = vec![0u8; 20000];
    sparse[4096] = b'x';
    assert_eq!(std::fs::read(m.path("sparse")).unwrap(), sparse);
    assert_eq!(std::fs::read(m.path("empty")).unwrap(), b"");
}

/// Runs `cofferfs ARGS` with the environment additions `env`, stdin from /dev/null (or
/// exactly `stdin`); returns (status, stdout, stderr).
pub fn run_env(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cofferfs");
    if let Some(s) = stdin {
        let _ = child.stdin.take().unwrap().write_all(s.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A daemon mount made by `cofferfs mount` (in the background, as a user runs it), unmounted
/// in `Drop` (`cofferfs umount`, then `fusermount3 -uz` if it is still there).
pub struct DaemonMount {
    pub mnt: PathBuf,
}

impl DaemonMount {
    /// Mounts `cipherdir` at `mnt` (created) with `extra` options and `env`; panics on failure.
    pub fn new(env: &[(&str, &str)], cipherdir: &Path, mnt: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(mnt).unwrap();
        let mut args = vec!["mount"];
        args.extend_from_slice(extra);
        args.extend([cipherdir.to_str().unwrap(), mnt.to_str().unwrap()]);
        let (code, out, err) = run_env(env, &args, None);
        assert_eq!(code, 0, "cofferfs {args:?}: {out}{err}");
        assert!(is_mounted(mnt));
        DaemonMount {
            mnt: mnt.to_owned(),
        }
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        let _ = Command::new(bin()).arg("umount").arg(&self.mnt).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while is_mounted(&self.mnt) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
    }
}

/// Every byte of the regular files at the top of `dir` (a cipherdir's store and marker), by
/// path: two equal snapshots show that a refused command changed nothing there.
pub fn top_level_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}
