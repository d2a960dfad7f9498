//! Real programs inside a real cofferfs mount: git, SQLite, tar, cp -a, rsync, mmap,
//! concurrent O_APPEND writers, rename/unlink of open files, a 1 GiB file and a parallel
//! writer stress. Every test has its own mount and checks real outcomes (content, modes,
//! times, link counts), most of them again after an unmount and a fresh mount, so nothing
//! passes because the kernel's page cache still held the data.
//!
//! Programs needed: git, python3, tar, diff, sha256sum, dd, cp (coreutils) and rsync (the
//! rsync test is skipped, with a printed reason, when `rsync` is missing; scripts/test.sh
//! installs it).

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::mount::{Mounted, sh};
use common::rng::Rng;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// True when `prog` is on PATH.
fn have(prog: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Writes a helper script outside the mount and returns its path.
fn script(m: &Mounted, name: &str, text: &str) -> PathBuf {
    let p = m.dir.path().join(name);
    fs::write(&p, text).unwrap();
    p
}

/// A plain (non-cofferfs) scratch directory next to the mount.
fn plain_dir(m: &Mounted, name: &str) -> PathBuf {
    let p = m.dir.path().join(name);
    fs::create_dir(&p).unwrap();
    p
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.to_str().unwrap().replace('\'', "'\\''"))
}

/// Sets atime and mtime (seconds, nanoseconds; seconds may be negative) without following
/// a symlink.
fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// One line per entry under `root` (the root itself as "."): type, permission bits, link
/// count, size (not for directories: that is the backing filesystem's business), mtime with
/// nanoseconds, optionally atime (of regular files only), symlink target, and the path. Sorted by path.
fn listing(root: &Path, with_atime: bool) -> Vec<String> {
    fn walk(root: &Path, rel: &Path, with_atime: bool, out: &mut Vec<String>) {
        let p = root.join(rel);
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_file() {
            'f'
        } else {
            '?'
        };
        let size = if ft.is_dir() {
            "-".to_string()
        } else {
            md.len().to_string()
        };
        let target = if ft.is_symlink() {
            fs::read_link(&p).unwrap().display().to_string()
        } else {
            String::new()
        };
        // Directory atimes move whenever anything lists them, symlink atimes whenever
        // anything reads them (this listing included), so only files' atimes are compared.
        let atime = if with_atime && ft.is_file() {
            format!(" a={}.{:09}", md.atime(), md.atime_nsec())
        } else {
            String::new()
        };
        let name = if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            rel.display().to_string()
        };
        out.push(format!(
            "{name} {kind} {:o} n={} s={size} m={}.{:09}{atime} -> {target}",
            md.mode() & 0o7777,
            md.nlink(),
            md.mtime(),
            md.mtime_nsec(),
        ));
        if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), with_atime, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), with_atime, &mut out);
    out
}

fn assert_same_listing(want: &[String], got: &[String], what: &str) {
    if want != got {
        let mut msg = format!("{what}: listings differ\n");
        for l in want.iter().filter(|l| !got.contains(l)) {
            msg.push_str(&format!("  - {l}\n"));
        }
        for l in got.iter().filter(|l| !want.contains(l)) {
            msg.push_str(&format!("  + {l}\n"));
        }
        panic!("{msg}");
    }
}

/// `diff -r` that compares symlinks as links (never follows them).
fn diff_r(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the reference tree: nested dirs, files of awkward sizes around the 4 KiB chunk,
/// symlinks (relative, absolute, dangling, to a dir), hard links, modes 0600/0755/0444/0555,
/// a name with spaces and non-ASCII, and distinct mtimes in the past. `pre_1970` adds whole-
/// second times before the epoch; `pre_1970_fraction` adds one with nanoseconds.
fn build_tree(root: &Path, pre_1970: bool, pre_1970_fraction: bool) {
    let mut rng = Rng(42);
    fs::create_dir(root).unwrap();
    let dirs = ["d1", "d1/d2", "d1/d2/d3", "ro_dir", "empty_dir"];
    for d in dirs {
        fs::create_dir(root.join(d)).unwrap();
    }
    let files: &[(&str, usize, u32)] = &[
        ("empty", 0, 0o644),
        ("one", 1, 0o600),
        ("d1/f4095", 4095, 0o444),
        ("d1/f4096", 4096, 0o755),
        ("d1/d2/f4097", 4097, 0o600),
        ("d1/d2/d3/big", (1 << 20) + 3, 0o644),
        ("d1/d2/d3/f8193", 8193, 0o640),
        ("ro_dir/inside", 100, 0o444),
        ("naïve file with spaces.txt", 12345, 0o644),
    ];
    for (name, size, mode) in files {
        let p = root.join(name);
        fs::write(&p, rng.bytes(*size)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    fs::hard_link(root.join("one"), root.join("d1/one_link")).unwrap();
    fs::hard_link(root.join("d1/d2/d3/big"), root.join("d1/d2/big_link")).unwrap();
    std::os::unix::fs::symlink("d1/f4095", root.join("sym_rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute/target", root.join("sym_abs")).unwrap();
    std::os::unix::fs::symlink("d1", root.join("sym_dir")).unwrap();
    std::os::unix::fs::symlink("../../one", root.join("d1/d2/sym_up")).unwrap();

    // Times: children first, directories last (writing a child changes its directory).
    let mut times: Vec<(i64, i64)> = vec![
        (1_000_000_000, 123_456_789),
        (1, 0),
        (1_600_000_000, 500_000_000),
        (0, 999_999_999),
        (1_234_567_890, 1),
        (946_684_800, 0),
    ];
    if pre_1970 {
        times.push((-157_766_400, 0)); // 1965-01-01
        times.push((-1, 0));
    }
    if pre_1970_fraction {
        times.push((-100_000_000, 250_000_000)); // 1966-10-30 14:13:20.25
    }
    let mut all = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        all.push(d.clone());
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                all.push(e.path());
            }
        }
    }
    // Deepest paths last → reverse so files and deep dirs are stamped before their parents.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        let t = times[i % times.len()];
        let a = times[(i + 1) % times.len()];
        set_times(p, a, t);
    }
    // The read-only directory last: nothing can be created in it afterwards anyway.
    fs::set_permissions(root.join("ro_dir"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(root.join("d1/d2"), fs::Permissions::from_mode(0o700)).unwrap();
    // chmod changes ctime only, so the times above stand.
}

/// Number of ciphertext files (not directories, not the header store or the volume marker) in
/// the cipherdir.
fn cipher_file_count(m: &Mounted) -> usize {
    sh(
        &m.cipherdir,
        "find . -type f ! -name 'cofferfs.db*' ! -name cofferfs.volume | wc -l",
    )
    .trim()
    .parse()
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------------------

const GIT_ENV: &str = "export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
    GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org \
    GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org; ";

#[test]
fn git_init_commit_fsck_gc_and_local_clone() {
    let mut m = Mounted::new();
    let git = |dir: &Path, s: &str| sh(dir, &format!("{GIT_ENV}{s}"));
    git(
        &m.mnt,
        "git init -q -b main repo && cd repo
         mkdir -p src/util docs empty/nested
         printf 'fn main() {}\\n' > src/main.rs
         seq 1 30000 > docs/numbers.txt
         head -c 70001 /dev/zero | tr '\\0' 'x' > src/util/blob.bin
         printf '#!/bin/sh\\necho hi\\n' > run.sh && chmod +x run.sh
         echo '# readme' > README.md
         ln -s README.md link
         touch empty/nested/.keep
         git add -A
         git commit -q -m 'first commit'
         echo more >> README.md
         git mv src/main.rs src/lib.rs
         seq 30000 -1 1 > docs/numbers.txt
         git commit -qam 'second commit'
         git fsck --full --strict",
    );
    let repo = m.path("repo");
    let log = git(&repo, "git log --format=%s");
    assert_eq!(log, "second commit\nfirst commit\n");
    // The index's stat cache agrees with what the mount reports: nothing looks modified.
    assert_eq!(git(&repo, "git status --porcelain"), "");
    // Packed objects (git gc writes packs, then reads them through mmap).
    git(&repo, "git gc -q && git fsck --full --strict");
    assert_eq!(
        git(&repo, "git count-objects -v | grep '^count:'"),
        "count: 0\n"
    );

    // A local clone hard-links the object files.
    git(&m.mnt, "git clone -q repo clone");
    let clone = m.path("clone");
    git(&clone, "git fsck --full --strict");
    assert_eq!(git(&clone, "git log --format=%s"), log);
    assert_eq!(
        git(&clone, "git rev-parse HEAD"),
        git(&repo, "git rev-parse HEAD")
    );
    assert_eq!(git(&clone, "git status --porcelain"), "");
    let linked: usize = sh(&clone, "find .git/objects -type f -links +1 | wc -l")
        .trim()
        .parse()
        .unwrap();
    assert!(linked > 0, "local clone made no hard links");
    let out = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", ".git"])
        .arg(&repo)
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Everything survives a remount.
    m.unmount();
    m.mount(&[]);
    git(&repo, "git fsck --full --strict");
    git(&clone, "git fsck --full --strict");
    assert_eq!(git(&clone, "git log --format=%s"), log);
    assert_eq!(
        git(&repo, "git show HEAD:docs/numbers.txt | sed -n 1p"),
        "30000\n"
    );
}

// ---------------------------------------------------------------------------------------
// SQLite (python3's sqlite3 module)
// ---------------------------------------------------------------------------------------

const SQLITE_WRITE: &str = r#"
import hashlib, os, sqlite3, sys
path, mode, n, crash = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "crash"
con = sqlite3.connect(path, isolation_level=None)
got = con.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]
assert got == mode.lower(), got
con.execute("PRAGMA synchronous=FULL")
con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB)")
model = {}
for i in range(n):
    con.execute("BEGIN")
    v = bytes([i % 251]) * (i % 3000 + 1)
    con.execute("INSERT INTO t(k, v) VALUES (?, ?)", (f"key{i}", v))
    model[f"key{i}"] = v
    if i % 7 == 0 and i > 0 and f"key{i-1}" in model:
        u = b"u" * (i % 5000)
        con.execute("UPDATE t SET v = ? WHERE k = ?", (u, f"key{i-1}"))
        model[f"key{i-1}"] = u
    if i % 10 == 9:
        con.execute("DELETE FROM t WHERE k = ?", (f"key{i-5}",))
        model.pop(f"key{i-5}", None)
    con.execute("COMMIT")
h = hashlib.sha256()
for k in sorted(model):
    h.update(k.encode() + b"=" + model[k] + b";")
print(len(model), h.hexdigest(), flush=True)
if crash:
    os._exit(0)  # no close: the WAL and its -shm stay behind for recovery
con.close()
"#;

const SQLITE_CHECK: &str = r#"
import hashlib, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
ic = con.execute("PRAGMA integrity_check").fetchall()
assert ic == [("ok",)], ic
n = con.execute("SELECT count(*) FROM t").fetchone()[0]
h = hashlib.sha256()
for k, v in con.execute("SELECT k, v FROM t ORDER BY k"):
    h.update(k.encode() + b"=" + v + b";")
print(n, h.hexdigest())
"#;

fn sqlite_round_trip(mode: &str, crash: bool) {
    let mut m = Mounted::new();
    let w = script(&m, "w.py", SQLITE_WRITE);
    let c = script(&m, "c.py", SQLITE_CHECK);
    let db = m.path("db/test.sqlite");
    fs::create_dir(m.path("db")).unwrap();
    let n = 1200;
    let t = Instant::now();
    let model = sh(
        &m.mnt,
        &format!(
            "python3 {} {} {mode} {n} {}",
            quote(&w),
            quote(&db),
            if crash { "crash" } else { "close" }
        ),
    );
    eprintln!("sqlite {mode}: {n} transactions in {:?}", t.elapsed());
    // 1200 inserts, 120 deletes.
    assert!(model.starts_with("1080 "), "{model}");
    if crash {
        assert!(m.path("db/test.sqlite-wal").exists(), "WAL left behind");
    }
    let check = format!("python3 {} {}", quote(&c), quote(&db));
    assert_eq!(sh(&m.mnt, &check), model);
    m.unmount();
    m.mount(&[]);
    assert_eq!(sh(&m.mnt, &check), model);
    // sqlite3's own view, if the CLI is there (python's module is the one that must be).
    if have("sqlite3") {
        assert_eq!(
            sh(
                &m.mnt,
                &format!("sqlite3 {} 'PRAGMA integrity_check'", quote(&db))
            ),
            "ok\n"
        );
    }
}

#[test]
fn sqlite_rollback_journal_1200_transactions_survive_remount() {
    sqlite_round_trip("DELETE", false);
}

#[test]
fn sqlite_wal_1200_transactions_recover_after_remount() {
    // WAL mode maps the -shm file MAP_SHARED; the writer exits without closing, so the
    // next open must recover the committed transactions from the WAL.
    sqlite_round_trip("WAL", true);
}

// ---------------------------------------------------------------------------------------
// tar, cp -a, rsync
// ---------------------------------------------------------------------------------------

#[test]
fn tar_round_trip_keeps_content_modes_times_and_links() {
    let m = Mounted::new();
    let src = m.dir.path().join("src");
    build_tree(&src, true, false);
    let want = listing(&src, false);
    // pax format keeps nanosecond mtimes and times before 1970.
    sh(
        &m.mnt,
        &format!("tar --format=posix -cf tree.tar -C {} .", quote(&src)),
    );
    sh(&m.mnt, "mkdir x && tar -xf tree.tar -C x");
    let x = m.path("x");
    diff_r(&src, &x);
    assert_same_listing(&want, &listing(&x, false), "extracted into the mount");
    let ino = |p: &str| fs::symlink_metadata(x.join(p)).unwrap().ino();
    assert_eq!(ino("one"), ino("d1/one_link"));
    assert_eq!(ino("d1/d2/d3/big"), ino("d1/d2/big_link"));
    assert_ne!(ino("one"), ino("d1/d2/d3/big"));

    // And back out: tar from the mount, extract to a plain dir.
    let back = plain_dir(&m, "back");
    sh(
        &m.mnt,
        &format!(
            "tar --format=posix -cf - -C x . | tar -xf - -C {}",
            quote(&back)
        ),
    );
    diff_r(&src, &back);
    assert_same_listing(&want, &listing(&back, false), "extracted out of the mount");
}

#[test]
fn cp_a_keeps_modes_and_nanosecond_times_both_ways() {
    let m = Mounted::new();
    let src = m.dir.path().join("src");
    build_tree(&src, true, false);
    let want = listing(&src, true);
    sh(
        &m.mnt,
        &format!("cp -a {} {}", quote(&src), quote(&m.path("copy"))),
    );
    // Listed before anything reads the copies, so the atimes are cp's.
    assert_same_listing(
        &want,
        &listing(&m.path("copy"), true),
        "cp -a into the mount",
    );
    let back = m.dir.path().join("back");
    sh(
        &m.mnt,
        &format!("cp -a {} {}", quote(&m.path("copy")), quote(&back)),
    );
    assert_same_listing(&want, &listing(&back, true), "cp -a out of the mount");
    diff_r(&src, &m.path("copy"));
    diff_r(&src, &back);
}

#[test]
fn times_before_1970_with_nanoseconds_are_kept() {
    let m = Mounted::new();
    let p = m.path("old");
    fs::write(&p, b"x").unwrap();
    for t in [
        (-100_000_000, 250_000_000),
        (-1, 1),
        (-1, 999_999_999),
        (-2_000_000_000, 500_000_000),
    ] {
        set_times(&p, t, t);
        let md = fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (md.mtime(), md.mtime_nsec(), md.atime(), md.atime_nsec()),
            (t.0, t.1, t.0, t.1),
            "utimensat({t:?})"
        );
    }
}

#[test]
fn rsync_into_the_mount_then_nothing_left_to_transfer() {
    if !have("rsync") {
        eprintln!("SKIPPED: rsync is not installed (apt-get install rsync; scripts/test.sh does)");
        return;
    }
    let m = Mounted::new();
    let src = m.dir.path().join("src");
    build_tree(&src, true, false);
    let want = listing(&src, false);
    let (s, d) = (
        format!("{}/", src.to_str().unwrap()),
        format!("{}/", m.path("dst").to_str().unwrap()),
    );
    sh(&m.mnt, &format!("rsync -aH '{s}' '{d}'"));
    diff_r(&src, &m.path("dst"));
    assert_same_listing(&want, &listing(&m.path("dst"), false), "rsync -aH");
    for flags in ["-aH", "-aHc"] {
        let out = sh(
            &m.mnt,
            &format!("rsync {flags} --dry-run --itemize-changes '{s}' '{d}'"),
        );
        assert_eq!(out, "", "rsync {flags} --dry-run still has work to do");
    }
    // A change is seen and transferred (the dry runs above could not just be blind).
    fs::write(src.join("d1/f4096"), b"changed").unwrap();
    let out = sh(
        &m.mnt,
        &format!("rsync -aH --dry-run --itemize-changes '{s}' '{d}'"),
    );
    assert!(out.contains("d1/f4096"), "{out}");
    sh(&m.mnt, &format!("rsync -aH '{s}' '{d}'"));
    assert_eq!(fs::read(m.path("dst/d1/f4096")).unwrap(), b"changed");
}

// ---------------------------------------------------------------------------------------
// mmap
// ---------------------------------------------------------------------------------------

const MMAP_WRITE: &str = r#"
import mmap, os, random, sys
mnt, model_dir = sys.argv[1], sys.argv[2]
size = 3 * 1024 * 1024 + 5
rng = random.Random(1234)

# A: created sparse, then written only through a shared writable mapping.
a = os.path.join(mnt, "a")
model = bytearray(size)
fd = os.open(a, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, size)
mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
for _ in range(400):
    off = rng.randrange(size)
    n = min(rng.randrange(1, 20000), size - off)
    data = rng.randbytes(n)
    mm[off:off + n] = data
    model[off:off + n] = data
mm[size - 1:size] = b"Z"
model[size - 1:size] = b"Z"
mm.flush()  # msync(MS_SYNC)
mm.close()
os.close(fd)
with open(a, "rb") as f:
    assert f.read() == model, "normal read after msync differs"
with open(os.path.join(model_dir, "a"), "wb") as f:
    f.write(model)

# B: written with write(2), read back through a read-only mapping.
b = os.path.join(mnt, "b")
data_b = rng.randbytes(size)
with open(b, "wb") as f:
    f.write(data_b)
with open(b, "rb") as f:
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    assert len(mm) == size
    assert mm[:] == data_b, "mapping of a normally written file differs"
    mm.close()
with open(os.path.join(model_dir, "b"), "wb") as f:
    f.write(data_b)
"#;

const MMAP_READ: &str = r#"
import mmap, os, sys
mnt, model_dir = sys.argv[1], sys.argv[2]
for name in ("a", "b"):
    want = open(os.path.join(model_dir, name), "rb").read()
    with open(os.path.join(mnt, name), "rb") as f:
        assert f.read() == want, f"{name}: read differs"
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        assert mm[:] == want, f"{name}: mapping differs"
        mm.close()
print("ok")
"#;

#[test]
fn mmap_shared_writes_and_read_mappings_match_normal_io() {
    let mut m = Mounted::new();
    let w = script(&m, "w.py", MMAP_WRITE);
    let r = script(&m, "r.py", MMAP_READ);
    let models = plain_dir(&m, "models");
    let args = format!("{} {}", quote(&m.mnt), quote(&models));
    sh(&m.mnt, &format!("python3 {} {args}", quote(&w)));
    assert_eq!(sh(&m.mnt, &format!("python3 {} {args}", quote(&r))), "ok\n");
    // After a remount nothing can come from the page cache.
    m.unmount();
    m.mount(&[]);
    assert_eq!(
        fs::read(m.path("a")).unwrap(),
        fs::read(models.join("a")).unwrap()
    );
    assert_eq!(sh(&m.mnt, &format!("python3 {} {args}", quote(&r))), "ok\n");
}

// ---------------------------------------------------------------------------------------
// Concurrent O_APPEND writers
// ---------------------------------------------------------------------------------------

const APPENDER: &str = r#"
import os, sys, time
path, tag, go = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(2000):
    line = (f"{tag} {i:05d} " + tag * (i % 97) + "\n").encode()
    assert os.write(fd, line) == len(line)
os.close(fd)
"#;

#[test]
fn two_processes_appending_concurrently_lose_and_tear_nothing() {
    let mut m = Mounted::new();
    let a = script(&m, "append.py", APPENDER);
    let go = m.dir.path().join("go");
    let f = m.path("log");
    let cmd = |tag: &str| format!("python3 {} {} {tag} {}", quote(&a), quote(&f), quote(&go));
    sh(
        &m.mnt,
        &format!(
            "{} & p1=$!; {} & p2=$!; sleep 0.3; touch {}; wait $p1; wait $p2",
            cmd("A"),
            cmd("B"),
            quote(&go)
        ),
    );
    let check = |text: &[u8]| {
        let text = std::str::from_utf8(text).expect("utf-8");
        let mut next = [0usize; 2];
        let mut interleaved = 0;
        let mut prev = ' ';
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let tag = parts.next().unwrap();
            let i: usize = parts.next().expect(line).parse().expect(line);
            let pad = parts.next().expect(line);
            let t = match tag {
                "A" => 0,
                "B" => 1,
                _ => panic!("torn line {line:?}"),
            };
            assert_eq!(i, next[t], "lost or reordered line before {line:?}");
            assert_eq!(pad, tag.repeat(i % 97), "torn line {line:?}");
            next[t] += 1;
            let c = tag.chars().next().unwrap();
            if c != prev {
                interleaved += 1;
                prev = c;
            }
        }
        assert_eq!(next, [2000, 2000]);
        assert!(text.ends_with('\n'));
        interleaved
    };
    let switches = check(&fs::read(&f).unwrap());
    eprintln!("writers switched {switches} times");
    m.unmount();
    m.mount(&[]);
    check(&fs::read(&f).unwrap());
}

// ---------------------------------------------------------------------------------------
// Open files that lose their name
// ---------------------------------------------------------------------------------------

#[test]
fn rename_over_an_open_file_keeps_the_old_inode_usable_through_its_fd() {
    let m = Mounted::new();
    let (a, b) = (m.path("a"), m.path("b"));
    let old: Vec<u8> = Rng(1).bytes(10_000);
    fs::write(&a, &old).unwrap();
    fs::write(&b, b"new content of b").unwrap();
    let files_before = cipher_file_count(&m);
    let fd = OpenOptions::new().read(true).write(true).open(&a).unwrap();
    fs::rename(&b, &a).unwrap();

    let mut buf = vec![0u8; old.len()];
    fd.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, old, "the fd reads the replaced file's content");
    assert_eq!(fs::read(&a).unwrap(), b"new content of b");
    assert!(!b.exists());

    // fd-based operations go through the open file (POSIX-CORNERS item 3).
    let st = fd.metadata().expect("fstat");
    assert_eq!(st.len(), old.len() as u64);
    assert_eq!(st.nlink(), 0);
    fd.sync_all().expect("fsync");
    fd.sync_data().expect("fdatasync");
    fd.set_permissions(fs::Permissions::from_mode(0o640))
        .expect("fchmod");
    assert_eq!(fd.metadata().unwrap().mode() & 0o7777, 0o640);
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 42);
    fd.set_times(fs::FileTimes::new().set_modified(when).set_accessed(when))
        .expect("futimens");
    let st = fd.metadata().unwrap();
    assert_eq!((st.mtime(), st.mtime_nsec()), (1_500_000_000, 42));
    fd.write_all_at(b"XYZ", 4095).unwrap();
    fd.set_len(5000).expect("ftruncate");
    let mut buf = vec![0u8; 6000];
    let n = fd.read_at(&mut buf, 0).unwrap();
    let mut want = old[..5000].to_vec();
    want[4095..4098].copy_from_slice(b"XYZ");
    assert_eq!(&buf[..n], &want[..]);
    // None of it touched the new `a`.
    assert_eq!(fs::read(&a).unwrap(), b"new content of b");
    assert_ne!(fs::metadata(&a).unwrap().mode() & 0o7777, 0o640);
    drop(fd);
    assert_eq!(fs::read(&a).unwrap(), b"new content of b");
    assert_eq!(
        cipher_file_count(&m),
        files_before - 1,
        "the replaced file's ciphertext is gone after close"
    );
}

#[test]
fn unlinked_open_file_stays_usable_until_closed_then_is_gone() {
    let m = Mounted::new();
    fs::write(m.path("keep"), b"k").unwrap();
    let before = cipher_file_count(&m);
    let p = m.path("doomed");
    let fd = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let first = Rng(2).bytes(9_000);
    fd.write_all_at(&first, 0).unwrap();
    assert_eq!(cipher_file_count(&m), before + 1);
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    assert!(
        fs::read_dir(&m.mnt)
            .unwrap()
            .all(|e| e.unwrap().file_name() != "doomed")
    );

    let mut buf = vec![0u8; first.len()];
    fd.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, first);
    // Writes after the unlink, across chunk boundaries and past the old end.
    let more = Rng(3).bytes(20_000);
    fd.write_all_at(&more, 5_000).unwrap();
    let mut want = first.clone();
    want.resize(25_000, 0);
    want[5_000..25_000].copy_from_slice(&more);
    let mut buf = vec![0u8; 30_000];
    let n = fd.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], &want[..]);
    let st = fd.metadata().expect("fstat");
    assert_eq!((st.len(), st.nlink()), (25_000, 0));
    fd.sync_all().expect("fsync");
    fd.set_permissions(fs::Permissions::from_mode(0o600))
        .expect("fchmod");
    assert_eq!(fd.metadata().unwrap().mode() & 0o7777, 0o600);
    // The name is free for a new file meanwhile.
    fs::write(&p, b"reborn").unwrap();
    fd.read_exact_at(&mut buf[..25_000], 0).unwrap();
    assert_eq!(&buf[..25_000], &want[..]);
    fs::remove_file(&p).unwrap();
    drop(fd);
    assert!(!p.exists());
    assert_eq!(cipher_file_count(&m), before, "ciphertext left after close");
    assert_eq!(fs::read(m.path("keep")).unwrap(), b"k");
}

// ---------------------------------------------------------------------------------------
// Big files
// ---------------------------------------------------------------------------------------

/// Writes `size` bytes of a seeded stream into the mount with `dd`, checks the sha256 of
/// what reads back (before and after a remount) against the stream's.
fn big_file(size: u64) {
    const GEN: &str = r#"
import hashlib, random, sys
n, out_hash = int(sys.argv[1]), sys.argv[2]
rng, h, out = random.Random(7), hashlib.sha256(), sys.stdout.buffer
while n:
    k = min(n, 1 << 20)
    b = rng.randbytes(k)
    h.update(b)
    out.write(b)
    n -= k
out.flush()
open(out_hash, "w").write(h.hexdigest() + "\n")
"#;
    let mut m = Mounted::new();
    let g = script(&m, "gen.py", GEN);
    let hash_file = m.dir.path().join("src.sha256");
    let t = Instant::now();
    sh(
        &m.mnt,
        &format!(
            "python3 {} {size} {} | dd of=big bs=1M iflag=fullblock conv=fsync status=none",
            quote(&g),
            quote(&hash_file)
        ),
    );
    let wrote = t.elapsed();
    let want = fs::read_to_string(&hash_file).unwrap();
    assert_eq!(fs::metadata(m.path("big")).unwrap().len(), size);
    m.unmount();
    m.mount(&[]);
    let t = Instant::now();
    let got = sh(&m.mnt, "sha256sum < big | cut -d' ' -f1");
    eprintln!(
        "{size} bytes: written in {wrote:?}, read back in {:?}",
        t.elapsed()
    );
    assert_eq!(got, want);
    assert_eq!(fs::metadata(m.path("big")).unwrap().len(), size);
}

#[test]
fn file_of_64_mib_plus_one_round_trips_by_sha256() {
    big_file((64 << 20) + 1);
}

/// Kept but ignored: a debug build moves only about 2 MB/s through the mount (64 MiB + 1
/// takes about a minute each way), so 1 GiB would take far over the 60 s budget. Run it with
/// `cargo test --release --test programs -- --ignored`.
#[test]
#[ignore = "slow in a debug build (~2 MB/s): run with --release -- --ignored"]
fn file_of_1_gib_plus_one_round_trips_by_sha256() {
    big_file((1 << 30) + 1);
}

// ---------------------------------------------------------------------------------------
// Parallel stress
// ---------------------------------------------------------------------------------------

#[test]
fn four_threads_writing_unaligned_neighbouring_regions_never_tear_chunks() {
    const THREADS: u64 = 4;
    // Regions start and end inside chunks, so neighbours share a chunk at every boundary.
    const REGION: u64 = 262_147;
    let mut m = Mounted::new();
    let p = m.path("shared");
    let size = THREADS * REGION + 1_001;
    let init = Rng(99).bytes(size as usize);
    fs::write(&p, &init).unwrap();
    let results: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let p = p.clone();
                let init = &init;
                s.spawn(move || {
                    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
                    let base = t * REGION;
                    let mut model = init[base as usize..(base + REGION) as usize].to_vec();
                    let mut rng = Rng(1000 + t);
                    for step in 0..600 {
                        let off = rng.below(REGION);
                        let len = (1 + rng.below(9_000)).min(REGION - off);
                        let data = rng.bytes(len as usize);
                        f.write_all_at(&data, base + off).unwrap();
                        model[off as usize..(off + len) as usize].copy_from_slice(&data);
                        if step % 10 == 0 {
                            // Read a window around the write, crossing into neighbours'
                            // chunks but checking only our bytes.
                            let roff = off.saturating_sub(5_000);
                            let rlen = (len + 10_000).min(REGION - roff);
                            let mut buf = vec![0u8; rlen as usize];
                            f.read_exact_at(&mut buf, base + roff).unwrap();
                            assert_eq!(
                                buf,
                                model[roff as usize..(roff + rlen) as usize],
                                "thread {t} step {step}: region read back differs"
                            );
                        }
                    }
                    f.sync_all().unwrap();
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut want: Vec<u8> = results.concat();
    want.extend_from_slice(&init[(THREADS * REGION) as usize..]);
    let check = |got: Vec<u8>| {
        assert_eq!(got.len(), want.len());
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "content differs from the model at byte {i} (chunk {}, region {})",
                i / 4096,
                i as u64 / REGION
            );
        }
    };
    check(fs::read(&p).unwrap());
    m.unmount();
    m.mount(&[]);
    check(fs::read(&p).unwrap());
}
