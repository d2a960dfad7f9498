//! The inode budget (`mount --max-inodes`, issue 16): past it the daemon asks the kernel to
//! drop the names of the files used least recently, so walking a big tree does not grow the
//! daemon without bound (each inode the kernel keeps is an `O_PATH` fd and ~350 bytes in the
//! daemon). Files whose names were dropped work as before; open files and a process sitting
//! in a directory of the mount are not disturbed. Real mounts; the daemon's inodes are
//! counted as its fds in /proc, which the kernel's FORGETs close.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::Mounted;

const FILES: usize = 1500;

/// Open fds of process `pid`: one per inode the kernel holds, plus a few dozen of its own.
fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Waits up to 10 s for `pid` to hold at most `most` fds; returns what it holds then.
fn settle_at_most(pid: u32, most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = fds_of(pid);
        if n <= most || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_tree(dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    for i in 0..FILES {
        std::fs::write(dir.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    // Every name once more, in order: the first ones are now the least recently used.
    for i in 0..FILES {
        std::fs::metadata(dir.join(format!("f{i}"))).unwrap();
    }
}

#[test]
fn a_tree_bigger_than_the_budget_leaves_the_daemon_at_the_budget() {
    let budget = 200;
    let m = Mounted::with(&[], &["--max-inodes", &budget.to_string()]);
    let pid = m.daemon_pid().expect("daemon pid");
    let sub = m.path("sub");
    std::fs::create_dir(&sub).unwrap();
    let mut open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("sub/open all along"))
        .unwrap();
    open.write_all(b"before").unwrap();
    let sitter = Command::new("sh")
        .args(["-c", "cd \"$1\" && sleep 4 && /bin/pwd", "sh"])
        .arg(&sub)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    write_tree(&m.path("d"));
    let held = settle_at_most(pid, budget + 80);
    assert!(
        held <= budget + 80,
        "the daemon holds {held} fds for {FILES} files, over a budget of {budget}"
    );

    for i in 0..FILES {
        assert_eq!(
            std::fs::read_to_string(m.path(&format!("d/f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
    std::fs::rename(m.path("d/f0"), m.path("d/renamed")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.path("d/renamed")).unwrap(),
        "file 0"
    );
    std::fs::remove_file(m.path("d/f1")).unwrap();
    assert!(!m.path("d/f1").exists());
    assert_eq!(std::fs::read_dir(m.path("d")).unwrap().count(), FILES - 1);

    let link = std::fs::read_link(format!("/proc/self/fd/{}", open.as_raw_fd())).unwrap();
    assert_eq!(
        link,
        m.path("sub/open all along"),
        "the open file's name was dropped"
    );
    open.write_all(b" and after").unwrap();
    open.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    open.read_to_string(&mut back).unwrap();
    assert_eq!(back, "before and after");

    let out = sitter.wait_with_output().unwrap();
    assert!(out.status.success(), "pwd in the mount failed: {out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        sub.to_str().unwrap()
    );
}

#[test]
fn without_a_budget_the_kernel_keeps_every_inode() {
    // The measure above can fail: with no budget, every name stays and so does its fd.
    let m = Mounted::with(&[], &["--max-inodes", "0"]);
    let pid = m.daemon_pid().expect("daemon pid");
    write_tree(&m.path("d"));
    std::thread::sleep(Duration::from_millis(500));
    let held = fds_of(pid);
    assert!(held >= FILES, "{held} fds for {FILES} files with no budget");
}

#[test]
fn the_default_budget_is_far_above_a_small_tree() {
    let m = Mounted::new();
    let pid = m.daemon_pid().expect("daemon pid");
    write_tree(&m.path("d"));
    std::thread::sleep(Duration::from_millis(500));
    let held = fds_of(pid);
    assert!(
        held >= FILES,
        "{held} fds for {FILES} files under the default budget"
    );
}

/// CPU ticks (user + system) the daemon's thread named `name` has used.
fn thread_ticks(pid: u32, name: &str) -> u64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        if std::fs::read_to_string(task.join("comm")).unwrap().trim() == name {
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            // Fields after the parenthesised name: utime and stime are the 12th and 13th.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            return f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        }
    }
    panic!("no thread {name} in process {pid}");
}

#[test]
fn files_the_kernel_keeps_through_other_names_do_not_keep_the_pruner_busy() {
    // Each file has a second name in another directory, looked up too: dropping the first
    // name leaves the inode with the kernel, so the table cannot get under the budget. The
    // pruner must then rest, not rescan the table for every new inode, and nothing breaks.
    let budget = 100;
    let m = Mounted::with(&[], &["--max-inodes", &budget.to_string()]);
    let pid = m.daemon_pid().expect("daemon pid");
    std::fs::create_dir(m.path("a")).unwrap();
    std::fs::create_dir(m.path("b")).unwrap();
    let n = 600;
    for i in 0..n {
        std::fs::write(m.path(&format!("a/f{i}")), format!("linked {i}")).unwrap();
        std::fs::hard_link(m.path(&format!("a/f{i}")), m.path(&format!("b/f{i}"))).unwrap();
    }
    let before = thread_ticks(pid, "inode-pruner");
    // New inodes keep coming while the linked ones stay: each would wake a busy pruner.
    for i in 0..2000 {
        std::fs::write(m.path(&format!("a/new{i}")), b"").unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    let used = thread_ticks(pid, "inode-pruner") - before;
    let hz = 100; // USER_HZ on Linux
    assert!(used < hz, "the pruner used {used} ticks in about 3 s");
    for i in 0..n {
        assert_eq!(
            std::fs::read_to_string(m.path(&format!("b/f{i}"))).unwrap(),
            format!("linked {i}")
        );
        assert_eq!(
            std::fs::read_to_string(m.path(&format!("a/f{i}"))).unwrap(),
            format!("linked {i}")
        );
    }
}
