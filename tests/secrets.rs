//! Secrets in the mount daemon's memory (issue 15, item 4): a real background mount (as a
//! user starts it), a file written through it, then the daemon's memory read through
//! /proc/PID/maps and /proc/PID/mem. The password must be gone once the volume is unlocked;
//! the KEK must be held (the daemon needs it), but only in memory kept out of core dumps and
//! locked in RAM. And the daemon must not be dumpable at all.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cofferfs::crypto::wrap::{unwrap_fek, unwrap_name_key};
use cofferfs::format::{FileHeader, HEADER_LEN};
use cofferfs::keystore::HeaderStore;
use common::mount::{CHEAP_KDF, bin, cofferfs, cofferfs_with, is_mounted};

/// A password no other process or file holds: random, and long enough not to occur by chance.
fn unique_password() -> String {
    let mut b = [0u8; 16];
    getrandom_fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("pw-{hex}")
}

fn getrandom_fill(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(b)
        .unwrap();
}

/// Runs `args` with `stdin` as its input; returns (status, stdout, stderr).
fn run_command(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One memory mapping of a process: its address range, whether it may be read, and its
/// `VmFlags` from smaps.
#[derive(Debug)]
struct Region {
    start: u64,
    end: u64,
    readable: bool,
    name: String,
    flags: Vec<String>,
}

fn regions(pid: u32) -> Vec<Region> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out: Vec<Region> = Vec::new();
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            out.last_mut().unwrap().flags = flags.split_whitespace().map(String::from).collect();
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
        else {
            continue;
        };
        if perms.len() != 4 {
            continue;
        }
        out.push(Region {
            start,
            end,
            readable: perms.starts_with('r'),
            name: f.nth(3).unwrap_or("").to_owned(),
            flags: Vec::new(),
        });
    }
    out
}

/// Every address in `pid`'s readable memory where `needle` occurs, with its region.
fn find_in_memory<'a>(pid: u32, maps: &'a [Region], needle: &[u8]) -> Vec<(u64, &'a Region)> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut hits = Vec::new();
    for r in maps.iter().filter(|r| r.readable && r.name != "[vvar]") {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        // Some special mappings cannot be read; they hold no heap or stack data.
        let Ok(n) = mem.read_at(&mut buf, r.start) else {
            continue;
        };
        let buf = &buf[..n];
        let mut i = 0;
        while let Some(p) = buf[i..].iter().position(|&b| b == needle[0]) {
            let at = i + p;
            if buf[at..].starts_with(needle) {
                hits.push((r.start + at as u64, r));
            }
            i = at + 1;
        }
    }
    hits
}

/// The pid of the `cofferfs mount` daemon serving `cipherdir` (the background child: the
/// command that started it has exited).
fn daemon_pid(cipherdir: &Path) -> u32 {
    let want = cipherdir.to_str().unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if args.get(1) == Some(&&b"mount"[..]) && args.contains(&want.as_bytes()) {
            return pid;
        }
    }
    panic!("no daemon for {want}");
}

/// A volume mounted in the background (no `-f`), unmounted in `Drop`.
struct BackgroundMount {
    _dir: tempfile::TempDir,
    cipherdir: PathBuf,
    mnt: PathBuf,
    pid: u32,
}

impl Drop for BackgroundMount {
    fn drop(&mut self) {
        let _ = cofferfs(&["umount", self.mnt.to_str().unwrap()]);
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
        // The daemon exits once the volume is released.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How the password reaches `mount`.
#[derive(Debug, Clone, Copy)]
enum Source {
    Stdin,
    Passfile,
    Extpass,
    /// Typed at a terminal prompt: `script` gives the command a pseudo-terminal.
    Prompt,
}

/// Makes a volume with `password` and mounts it in the background, the password given as
/// `source` says.
fn mount_in_background(password: &str, source: Source) -> BackgroundMount {
    mount_in_background_via(&[], password, source)
}

/// Like [`mount_in_background`], with `cofferfs` started through `launcher` (a command that
/// runs its arguments).
fn mount_in_background_via(launcher: &[&str], password: &str, source: Source) -> BackgroundMount {
    let dir = tempfile::Builder::new()
        .prefix("cofferfs-secrets")
        .tempdir_in("/tmp")
        .unwrap();
    let cipherdir = dir.path().join("cipher");
    let mnt = dir.path().join("plain");
    std::fs::create_dir(&mnt).unwrap();
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    init.push(cipherdir.to_str().unwrap());
    let (code, out, err) = cofferfs_with(&init, password);
    assert_eq!(code, 0, "{out}{err}");
    let passfile = dir.path().join("pw");
    std::fs::write(&passfile, format!("{password}\n")).unwrap();
    std::fs::set_permissions(
        &passfile,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let extpass = format!("cat {}", passfile.display());
    let mut args = launcher.to_vec();
    args.extend([bin(), "mount"]);
    let stdin = match source {
        Source::Stdin | Source::Prompt => format!("{password}\n"),
        Source::Passfile => {
            args.extend(["--passfile", passfile.to_str().unwrap()]);
            String::new()
        }
        Source::Extpass => {
            args.extend(["--extpass", &extpass]);
            String::new()
        }
    };
    args.extend([cipherdir.to_str().unwrap(), mnt.to_str().unwrap()]);
    let (args, stdin) = match source {
        Source::Prompt => {
            let line = args.join(" ");
            let script = ["script", "-qec", &line, "/dev/null"];
            (
                script.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                format!("{password}\n"),
            )
        }
        _ => (args.iter().map(|s| s.to_string()).collect(), stdin),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run_command(&args, &stdin);
    assert_eq!(code, 0, "mount failed: {out}{err}");
    assert!(is_mounted(&mnt));
    let pid = daemon_pid(&cipherdir);
    BackgroundMount {
        _dir: dir,
        cipherdir,
        mnt,
        pid,
    }
}

#[test]
fn the_mounted_daemon_holds_no_password_and_keeps_the_kek_out_of_dumps() {
    for source in [
        Source::Stdin,
        Source::Passfile,
        Source::Extpass,
        Source::Prompt,
    ] {
        let password = unique_password();
        let m = mount_in_background(&password, source);
        std::fs::write(m.mnt.join("file"), vec![7u8; 100_000]).unwrap();
        // Held open while the memory is read: the daemon then has the file's cipher too.
        let open_file = std::fs::File::open(m.mnt.join("file")).unwrap();
        let mut head = [0u8; 16];
        std::os::unix::fs::FileExt::read_exact_at(&open_file, &mut head, 0).unwrap();
        // The KEK, the name key and the file's FEK, found independently of the daemon:
        // unwrapped from the store with the password.
        let (kek, fek, name_key) = {
            let store = HeaderStore::open(&m.cipherdir.join("cofferfs.db"), true).unwrap();
            let (_, kek) = store.unlock(password.as_bytes(), None).unwrap();
            let blob = std::fs::read_dir(&m.cipherdir)
                .unwrap()
                .flatten()
                .find(|e| e.metadata().unwrap().len() > 100_000)
                .unwrap()
                .path();
            let bytes = std::fs::read(blob).unwrap();
            let header = FileHeader::decode(&bytes[..HEADER_LEN]).unwrap();
            let (wrapped, _) = store.file_key(&header.file_id).unwrap().unwrap();
            let fek = unwrap_fek(&kek, &wrapped, &header.file_id).unwrap();
            let params = store.params().unwrap();
            let name_key =
                unwrap_name_key(&kek, &params.wrapped_name_key, &params.volume_id).unwrap();
            (*kek.expose(), *fek.expose(), *name_key.expose())
        };

        let maps = regions(m.pid);
        // A prefix too: a buffer that grew while the password was read leaves partial copies.
        let mut pw_hits = find_in_memory(m.pid, &maps, password.as_bytes());
        pw_hits.extend(find_in_memory(m.pid, &maps, &password.as_bytes()[..16]));
        assert!(
            pw_hits.is_empty(),
            "{source:?}: the password is in the daemon's memory at {:?}",
            pw_hits
                .iter()
                .map(|(a, r)| format!("{a:#x} {} {:?}", r.name, r.flags))
                .collect::<Vec<_>>()
        );
        // The name key's halves too: AES-SIV keys CMAC with one and CTR with the other, so a
        // cipher's key schedule would hold them apart.
        for (what, key) in [
            ("KEK", &kek[..]),
            ("FEK", &fek[..]),
            ("name key", &name_key[..]),
            ("name key's first half", &name_key[..32]),
            ("name key's second half", &name_key[32..]),
        ] {
            let hits = find_in_memory(m.pid, &maps, key);
            assert!(
                !hits.is_empty(),
                "{source:?}: the scan did not find the {what} the daemon must hold"
            );
            for (addr, r) in &hits {
                assert!(
                    r.flags.iter().any(|f| f == "dd"),
                    "{source:?}: {what} at {addr:#x} in a region that core dumps include: {r:?}"
                );
                // Root may always lock memory (CAP_IPC_LOCK); a user's limit may be too low.
                if rustix::process::geteuid().is_root() {
                    assert!(
                        r.flags.iter().any(|f| f == "lo"),
                        "{source:?}: {what} at {addr:#x} in memory that is not locked: {r:?}"
                    );
                }
            }
        }
        drop(open_file);
        drop(m);
    }
}

/// Runs its arguments without CAP_SYS_PTRACE (bounding and inheritable sets).
const NO_PTRACE: [&str; 4] = [
    "setpriv",
    "--bounding-set=-sys_ptrace",
    "--inh-caps=-sys_ptrace",
    "--",
];

#[test]
fn the_daemon_is_not_dumpable_and_has_no_core_limit() {
    // Without CAP_SYS_PTRACE, a process may look into another process of the same user and
    // capabilities (here `readlink /proc/PID/cwd`) only while that one is dumpable. Daemon,
    // control and prober all run without it, so that is the only difference between them.
    let m = mount_in_background_via(&NO_PTRACE, &unique_password(), Source::Stdin);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", m.pid)).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");

    let can_look_into = |pid: u32| {
        Command::new(NO_PTRACE[0])
            .args(&NO_PTRACE[1..])
            .args(["readlink", &format!("/proc/{pid}/cwd")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let mut control = Command::new(NO_PTRACE[0])
        .args(&NO_PTRACE[1..])
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let control_visible = can_look_into(control.id());
    control.kill().unwrap();
    control.wait().unwrap();
    assert!(
        control_visible,
        "cannot look into an ordinary process: the probe is broken"
    );
    assert!(
        !can_look_into(m.pid),
        "the daemon is dumpable: /proc/{}/cwd is readable without CAP_SYS_PTRACE",
        m.pid
    );
}

#[test]
fn without_lockable_memory_the_daemon_still_mounts_and_keeps_keys_out_of_dumps() {
    // No CAP_IPC_LOCK and a lock limit of 0: mlock fails, which must cost nothing but the lock.
    let launcher = [
        "setpriv",
        "--bounding-set=-ipc_lock",
        "--inh-caps=-ipc_lock",
        "--",
        "prlimit",
        "--memlock=0:0",
        "--",
    ];
    let password = unique_password();
    let m = mount_in_background_via(&launcher, &password, Source::Stdin);
    std::fs::write(m.mnt.join("f"), b"still works").unwrap();
    assert_eq!(std::fs::read(m.mnt.join("f")).unwrap(), b"still works");
    let kek = {
        let store = HeaderStore::open(&m.cipherdir.join("cofferfs.db"), true).unwrap();
        *store.unlock(password.as_bytes(), None).unwrap().1.expose()
    };
    let maps = regions(m.pid);
    let hits = find_in_memory(m.pid, &maps, &kek);
    assert!(!hits.is_empty(), "the scan did not find the KEK");
    for (addr, r) in &hits {
        assert!(r.flags.iter().any(|f| f == "dd"), "KEK at {addr:#x}: {r:?}");
        assert!(
            !r.flags.iter().any(|f| f == "lo"),
            "locked despite a limit of 0: {r:?}"
        );
    }
}
