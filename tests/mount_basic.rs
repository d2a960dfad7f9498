//! The mount end to end: files, directories, links and names through a real FUSE mount, and
//! nothing of the plaintext in the cipherdir.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::mount::{Mounted, cofferfs, sh};

#[test]
fn files_dirs_and_links_round_trip_and_survive_remount() {
    let mut m = Mounted::new();
    std::fs::write(m.path("hello.txt"), b"hello world\n").unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::fs::write(m.path("dir/inner"), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("hello.txt", m.path("link")).unwrap();
    std::fs::hard_link(m.path("hello.txt"), m.path("hard")).unwrap();
    assert_eq!(
        std::fs::metadata(m.path("hard")).unwrap().len(),
        12,
        "link reports plain size"
    );
    assert_eq!(std::fs::metadata(m.path("hello.txt")).unwrap().nlink(), 2);
    assert_eq!(
        std::fs::metadata(m.path("hello.txt")).unwrap().ino(),
        std::fs::metadata(m.path("hard")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(m.path("link")).unwrap().to_str(),
        Some("hello.txt")
    );
    assert_eq!(std::fs::symlink_metadata(m.path("link")).unwrap().len(), 9);
    m.unmount();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("link")).unwrap(), b"hello world\n");
    assert_eq!(
        std::fs::read(m.path("dir/inner")).unwrap(),
        vec![7u8; 100_000]
    );
    let mut names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "hard", "hello.txt", "link"]);
}

#[test]
fn cipherdir_leaks_no_plaintext_names_contents_or_targets() {
    let m = Mounted::new();
    let marker = "SECRETMARKER";
    std::fs::create_dir(m.path(&format!("{marker}-dir"))).unwrap();
    std::fs::write(
        m.path(&format!("{marker}-dir/{marker}-file")),
        marker.repeat(1000),
    )
    .unwrap();
    std::os::unix::fs::symlink(format!("/{marker}/target"), m.path("l")).unwrap();
    let out = std::process::Command::new("grep")
        .args(["-r", "-l", marker])
        .arg(&m.cipherdir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "grep found plaintext: {:?}",
        out
    );
    let names = sh(&m.cipherdir, "find . -print");
    assert!(!names.contains(marker), "{names}");
    let targets = sh(&m.cipherdir, "find . -type l -exec readlink {} \\;");
    assert!(!targets.contains(marker), "{targets}");
}

#[test]
fn mkdir_keeps_exact_permission_bits() {
    let m = Mounted::new();
    for mode in [0o151, 0o700, 0o755, 0o2750] {
        let p = m.path(&format!("d{mode:o}"));
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, mode);
    }
    // And at creation time, through mkdir(2)'s mode argument.
    sh(
        &m.mnt,
        "umask 022; mkdir -m 0151 e; stat -c %a e | grep -x 151",
    );
}

#[test]
fn long_names_work_up_to_255_bytes() {
    let m = Mounted::new();
    let long = "n".repeat(255);
    std::fs::write(m.path(&long), b"x").unwrap();
    std::fs::create_dir(m.path(&format!("{}d", "m".repeat(254)))).unwrap();
    let names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.len() == 255 && n.to_str().unwrap().starts_with('n'))
    );
    std::fs::rename(m.path(&long), m.path("short")).unwrap();
    assert_eq!(std::fs::read(m.path("short")).unwrap(), b"x");
    let too_long = "z".repeat(256);
    let err = std::fs::write(m.path(&too_long), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
}

#[test]
fn second_mount_and_bad_mountpoints_are_refused() {
    let m = Mounted::new();
    let other = m.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (code, _, err) = cofferfs(&[
        "mount",
        m.cipherdir.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 15, "{err}");
    assert!(err.contains("in use"), "{err}");
    let missing = m.dir.path().join("missing");
    let (code, _, err) = cofferfs(&[
        "mount",
        m.cipherdir.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 20, "{err}");
    std::fs::write(other.join("f"), b"x").unwrap();
    let (code, _, err) = cofferfs(&[
        "mount",
        m.cipherdir.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 20, "{err}");
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn wrong_password_does_not_mount() {
    let m = Mounted::new();
    let mut m2 = m; // keep the first alive; use a fresh volume for the wrong-password check
    m2.unmount();
    let other = m2.dir.path().join("m2");
    std::fs::create_dir(&other).unwrap();
    let out = std::process::Command::new(common::mount::bin())
        .args(["mount", "--passfile", "/dev/null"])
        .arg(&m2.cipherdir)
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    std::fs::write(m2.dir.path().join("pw"), "wrong\n").unwrap();
    let out = std::process::Command::new(common::mount::bin())
        .args(["mount", "--passfile"])
        .arg(m2.dir.path().join("pw"))
        .arg(&m2.cipherdir)
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!common::mount::is_mounted(&other));
}

#[test]
fn daemon_mode_returns_after_mount_and_umount_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    let p = dir.path().join("p");
    std::fs::create_dir(&p).unwrap();
    common::mount::init_volume(&c, &[]);
    let (code, _, err) = cofferfs(&["mount", c.to_str().unwrap(), p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(common::mount::is_mounted(&p));
    std::fs::write(p.join("f"), b"daemon").unwrap();
    let (code, _, err) = cofferfs(&["umount", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!common::mount::is_mounted(&p));
    // The daemon has released the volume: it mounts again at once.
    let (code, _, err) = cofferfs(&["mount", c.to_str().unwrap(), p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(p.join("f")).unwrap(), b"daemon");
    let (code, _, _) = cofferfs(&["umount", p.to_str().unwrap()]);
    assert_eq!(code, 0);
}

#[test]
fn sigterm_unmounts_cleanly() {
    let mut m = Mounted::new();
    std::fs::write(m.path("f"), b"x").unwrap();
    m.signal_and_wait(libc::SIGTERM);
    assert!(!common::mount::is_mounted(&m.mnt));
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
}

#[test]
fn large_directories_list_completely_with_plaintext_sizes() {
    let m = Mounted::new();
    std::fs::create_dir(m.path("big")).unwrap();
    for i in 0..3000 {
        std::fs::write(m.path(&format!("big/file-{i:05}")), vec![1u8; i % 50]).unwrap();
    }
    // `ls -l` goes through readdirplus: every entry, each with its plaintext size.
    let out = sh(&m.mnt, "ls -l --time-style=+ big | tail -n +2");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3000);
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields.last().unwrap();
        let i: usize = name.trim_start_matches("file-").parse().unwrap();
        assert_eq!(fields[4], (i % 50).to_string(), "{line}");
    }
}

/// Every inode the kernel holds costs the daemon one `O_PATH` fd: with the usual soft limit
/// (1024, or 20000 here) a big tree failed with EMFILE ("Too many open files") once that many
/// files were in the kernel's cache. The daemon raises its own limit at start.
#[test]
fn more_files_in_use_than_the_inherited_fd_soft_limit() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .expect("a finite hard limit");
    let mut m = Mounted::new();
    m.unmount();
    m.mount_via(&["prlimit", &format!("--nofile=128:{hard}"), "--"], &[]);
    std::fs::create_dir(m.path("d")).unwrap();
    sh(
        &m.path("d"),
        "seq 1 600 | xargs touch && find . -type f | xargs stat -c %s > /dev/null",
    );
    let listed = std::fs::read_dir(m.path("d")).unwrap().count();
    assert_eq!(listed, 600);
}

/// With a hard fd limit below the number of inodes the kernel holds (it cannot be raised
/// without CAP_SYS_RESOURCE), the daemon used to fail with EMFILE. Inodes now give their
/// `O_PATH` fds back past a budget and find their objects again by name: a tree bigger than
/// the limit stays usable, through renames (of files and of their directory), hard links,
/// attribute changes, xattrs and symlinks, and the daemon stays under its limit.
#[test]
fn a_tree_bigger_than_the_hard_fd_limit_stays_usable() {
    let mut m = Mounted::new();
    m.unmount();
    m.mount_via(&["prlimit", "--nofile=256:256", "--"], &[]);
    sh(
        &m.mnt,
        "mkdir -p d/sub && for i in $(seq 1 300); do echo $i > d/f$i; echo s$i > d/sub/g$i; done \
         && ln -s f1 d/link",
    );
    let xattr = m.path("d/f6");
    rustix::fs::setxattr(&xattr, "user.k", b"v", rustix::fs::XattrFlags::empty()).unwrap();
    // Every name once more: the kernel now holds more than 600 inodes.
    let sum = sh(
        &m.mnt,
        "find d -type f | xargs cat | grep -v s | paste -sd+ | bc",
    );
    assert_eq!(sum.trim(), (1..=300).sum::<u32>().to_string());
    // The first files were created longest ago: their fds went first.
    sh(
        &m.mnt,
        "chmod 600 d/f1 && touch -d @1000 d/f3 && test \"$(readlink d/link)\" = f1 \
         && mv d/f4 d/f4-renamed && mv d/sub d/sub2 && ln d/f5 d/f5b && rm d/f5b \
         && ln d/f7 d/f7b && rm d/f7",
    );
    for i in 1..=300 {
        assert_eq!(
            std::fs::read_to_string(m.path(&format!("d/sub2/g{i}"))).unwrap(),
            format!("s{i}\n")
        );
    }
    let st = |p: &str| std::fs::metadata(m.path(p)).unwrap();
    assert_eq!(st("d/f1").permissions().mode() & 0o777, 0o600);
    assert_eq!(st("d/f3").mtime(), 1000);
    assert_eq!(std::fs::read(m.path("d/f4-renamed")).unwrap(), b"4\n");
    assert_eq!(std::fs::read(m.path("d/f5")).unwrap(), b"5\n");
    assert_eq!(std::fs::read(m.path("d/f7b")).unwrap(), b"7\n");
    let mut v = [0u8; 8];
    let n = rustix::fs::getxattr(&xattr, "user.k", &mut v).unwrap();
    assert_eq!(&v[..n], b"v");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", m.daemon_pid().unwrap()))
        .unwrap()
        .count();
    assert!(fds < 256, "the daemon holds {fds} fds");
}

/// Fraction of the pages of `path` in the page cache (mincore on a shared read mapping).
fn resident_fraction(path: &std::path::Path) -> f64 {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let page = 4096;
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a read-only shared mapping of an open file, `len` bytes, unmapped below;
    // mincore writes one byte per page into `vec`, which has exactly that many.
    unsafe {
        use std::os::fd::AsRawFd;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
        libc::munmap(p, len);
    }
    vec.iter().filter(|&&b| b & 1 == 1).count() as f64 / pages as f64
}

/// A file read once stays in the page cache across opens (`FOPEN_KEEP_CACHE` when nothing
/// changed it since the last close), unless a read would have to move its atime: then the
/// cache is dropped so that the next read reaches the daemon.
#[test]
fn page_cache_is_kept_across_opens_unless_atime_is_due() {
    let m = Mounted::new();
    let p = m.path("f");
    std::fs::write(&p, vec![3u8; 1 << 20]).unwrap();
    std::fs::read(&p).unwrap();
    std::fs::read(&p).unwrap();
    assert!(resident_fraction(&p) > 0.9, "cache dropped at open");

    // atime older than mtime: relatime must update it at the next read.
    let f = std::fs::File::open(&p).unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 100,
            tv_nsec: 0,
        },
    };
    rustix::fs::futimens(&f, &times).unwrap();
    drop(f);
    assert!(resident_fraction(&p) < 0.1, "cache kept with an atime due");
    std::fs::read(&p).unwrap();
    assert!(std::fs::metadata(&p).unwrap().atime() > 5);
}

/// Sequential reads arrive as full 1 MiB requests: the mount's readahead is raised from the
/// kernel's 128 KiB (the daemon writes the mount's sysfs knob; tests run as root), and a big
/// sequential read still returns every byte.
#[test]
fn readahead_is_one_full_request_and_sequential_reads_are_whole() {
    let m = Mounted::new();
    let dev = std::fs::metadata(&m.mnt).unwrap().dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    // `Mounted` returns once the mount is in the mount table; the daemon raises the knob a
    // moment later (it needs the session serving to `stat` the mountpoint), and says "ready"
    // only after that. Wait for the knob as for the mount, then require 1024.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut now = std::fs::read_to_string(&knob).unwrap();
    while now.trim() != "1024" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        now = std::fs::read_to_string(&knob).unwrap();
    }
    assert_eq!(now.trim(), "1024");
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 123)
        .map(|i: u32| (i * 7 + i / 4096) as u8)
        .collect();
    std::fs::write(m.path("big"), &data).unwrap();
    let c = std::process::Command::new("sh")
        .arg("-c")
        .arg("echo 3 > /proc/sys/vm/drop_caches")
        .status()
        .unwrap();
    assert!(c.success());
    assert!(std::fs::read(m.path("big")).unwrap() == data);
}
