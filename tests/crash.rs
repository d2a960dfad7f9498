//! Crash safety under load (issue 5, point 6): the daemon is killed with SIGKILL at random
//! moments while threads of this process write, append, overwrite, truncate and fsync files of
//! many sizes and create, rename, unlink, mkdir and rmdir through the mount. The load is plain
//! syscalls on the mountpoint: when the daemon dies they fail (`ENOTCONN`), nothing outlives
//! the test. After each kill the dead mount is removed, the header store must open
//! (`cofferfs info`), the volume is mounted again, and every file whose last change completed
//! (`close` or `fsync` returned) before the kill must read back exactly.
//!
//! A path is *in flight* when an operation on it had started and not returned at the kill.
//! It may hold its old or its new state, exist or not, and may read as `EIO` (a torn chunk);
//! any other error fails the test. After the loop `fsck` may report exactly two kinds of
//! problem, and nothing else:
//! - `orphan key row`: at most one per writer per kill (a create interrupted between its key
//!   row and its header; an unlink or a rename over a file interrupted between removing the
//!   file and deleting its row), plus one per unlink or rename that completed in the last
//!   [`SHRED_WINDOW`] before a kill (the daemon deletes the key rows of deleted files in
//!   batches, `src/fs/shred_queue.rs`: a kill loses the batch being gathered);
//! - `chunk N fails authentication`, `invalid size`, or (format v2) `truncated: …` /
//!   `extended: …` on a file that was in flight and read as `EIO` after that kill (a torn
//!   write, or a growth torn between re-sealing the old last chunk and writing the new one).
//!
//! A file without its key row, a directory without its id, a name that does not decrypt or a
//! header store that does not open fails the test. The seed is printed; rerun one with
//! `COFFERFS_CRASH_SEED=N`; `COFFERFS_CRASH_KILLS=N` changes the number of kills (default 24).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::close;
use common::mount::{Mounted, cofferfs, is_mounted};
use common::rng::Rng;
use sha2::{Digest, Sha256};

/// Writer threads: as many as the daemon has worker threads.
const WRITERS: usize = 4;
/// Above this many files a writer deletes instead of creating, so a round's checks stay short.
const MAX_FILES_PER_WRITER: usize = 24;
/// The shared directory every writer also creates its files in (parallel directory operations).
const COMMON: &str = "common";

/// Seeded choices for the load (the generator itself is shared with other tests).
impl Rng {
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A write size: empty, tiny, around chunk boundaries, up to 128 KiB, sometimes 1 MiB.
    fn size(&mut self) -> usize {
        match self.below(20) {
            0 => 0,
            1 | 2 => 1 + self.below(100) as usize,
            3 | 4 => *self.pick(&[4095, 4096, 4097, 8191, 8192, 12289]),
            5 => (256 << 10) + self.below(768 << 10) as usize,
            _ => 1 + self.below(128 << 10) as usize,
        }
    }

    /// Random content of a random `size`, at most `max` bytes.
    fn content(&mut self, max: usize) -> Vec<u8> {
        let n = self.size().min(max);
        self.bytes(n)
    }
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a writer knows about one of its files.
enum FileState {
    /// The last change completed (close or fsync returned) before the kill: the content must
    /// read back exactly, with this sha256.
    Known { data: Vec<u8>, sha: String },
    /// An operation on it had started and not returned when the daemon died.
    InFlight,
}

fn known(data: Vec<u8>) -> FileState {
    FileState::Known {
        sha: sha(&data),
        data,
    }
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// One load thread's world: its files (in its own directory, its subdirectories and the
/// common directory, always under names only it uses) and its subdirectories.
struct Writer {
    id: usize,
    rng: Rng,
    serial: u64,
    files: BTreeMap<String, FileState>,
    /// Own subdirectories: `true` while a mkdir or rmdir of it is in flight.
    dirs: BTreeMap<String, bool>,
    /// Paths whose unlink, rmdir or rename away completed: they must not exist after the kill.
    gone: Vec<String>,
    /// In-flight files that read as EIO after a kill: left alone, for fsck to report.
    damaged: BTreeSet<String>,
    /// Errors that happened while the daemon was alive.
    unexpected: Vec<String>,
    ops: u64,
    in_flight_seen: u64,
    /// This round's operations, for the failure message.
    log: Vec<String>,
    /// When this round's unlinks and renames completed (each may shred a key row).
    removed_at: Vec<Instant>,
}

/// How long before a kill a completed unlink or rename may still have its key row queued
/// for deletion: the daemon gathers deletions for 50 ms, then commits them (debug build,
/// loaded machine: allow far more).
const SHRED_WINDOW: Duration = Duration::from_secs(1);

type Step = Result<(), String>;

fn io<T>(what: &str, path: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what} {path}: {e}"))
}

impl Writer {
    fn new(id: usize, seed: u64) -> Self {
        Writer {
            id,
            rng: Rng(seed),
            serial: 0,
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            gone: Vec::new(),
            damaged: BTreeSet::new(),
            unexpected: Vec::new(),
            removed_at: Vec::new(),
            ops: 0,
            in_flight_seen: 0,
            log: Vec::new(),
        }
    }

    fn home(&self) -> String {
        format!("w{}", self.id)
    }

    /// Runs operations until one fails; a failure after `killed` was set is the crash.
    fn run(&mut self, mnt: &Path, killed: &AtomicBool) {
        while !killed.load(Ordering::SeqCst) {
            if let Err(e) = self.step(mnt) {
                if !killed.load(Ordering::SeqCst) {
                    self.unexpected
                        .push(format!("writer {}: {e} (daemon alive)", self.id));
                }
                return;
            }
            self.ops += 1;
        }
    }

    fn known_files(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, s)| matches!(s, FileState::Known { .. }))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn parents(&self) -> Vec<String> {
        let mut p = vec![self.home(), COMMON.to_owned()];
        p.extend(
            self.dirs
                .iter()
                .filter(|(_, f)| !**f)
                .map(|(d, _)| d.clone()),
        );
        p
    }

    fn new_name(&mut self) -> String {
        let parents = self.parents();
        let parent = self.rng.pick(&parents).clone();
        self.serial += 1;
        format!("{parent}/f{}_{}", self.id, self.serial)
    }

    fn data_of(&self, path: &str) -> Vec<u8> {
        match &self.files[path] {
            FileState::Known { data, .. } => data.clone(),
            FileState::InFlight => unreachable!("only known files are picked"),
        }
    }

    fn step(&mut self, mnt: &Path) -> Step {
        let files = self.known_files();
        let roll = self.rng.below(100);
        if files.len() >= MAX_FILES_PER_WRITER {
            let p = self.rng.pick(&files).clone();
            return self.unlink(mnt, &p);
        }
        if files.is_empty() || roll < 30 {
            return self.create(mnt);
        }
        let p = self.rng.pick(&files).clone();
        match roll {
            30..45 => self.append(mnt, &p),
            45..60 => self.overwrite(mnt, &p),
            60..65 => self.truncate(mnt, &p),
            65..76 => self.rename(mnt, &p, &files),
            76..86 => self.unlink(mnt, &p),
            86..93 => self.mkdir(mnt),
            _ => self.rmdir(mnt),
        }
    }

    /// Optionally fsyncs (either kind), then closes.
    fn finish(&mut self, f: File, path: &str) -> Step {
        match self.rng.below(4) {
            0 => io("fsync", path, f.sync_all())?,
            1 => io("fdatasync", path, f.sync_data())?,
            _ => {}
        }
        io("close", path, close(f))?;
        self.log.push(format!("closed {path}"));
        Ok(())
    }

    fn create(&mut self, mnt: &Path) -> Step {
        let path = self.new_name();
        let data = self.rng.content(usize::MAX);
        self.files.insert(path.clone(), FileState::InFlight);
        let mut f = io("create", &path, File::create(mnt.join(&path)))?;
        // Several writes, an fsync in between now and then.
        let cut = self.rng.below(data.len() as u64 + 1) as usize;
        self.log
            .push(format!("create {path}: {} bytes", data.len()));
        io("write", &path, f.write_all(&data[..cut]))?;
        if self.rng.chance(20) {
            io("fsync", &path, f.sync_all())?;
        }
        io("write", &path, f.write_all(&data[cut..]))?;
        self.finish(f, &path)?;
        self.files.insert(path, known(data));
        Ok(())
    }

    fn append(&mut self, mnt: &Path, path: &str) -> Step {
        let mut data = self.data_of(path);
        let extra = self.rng.content(usize::MAX);
        self.log
            .push(format!("append {path}: {} + {}", data.len(), extra.len()));
        self.files.insert(path.to_owned(), FileState::InFlight);
        let open = OpenOptions::new().append(true).open(mnt.join(path));
        let mut f = io("open append", path, open)?;
        io("append", path, f.write_all(&extra))?;
        self.finish(f, path)?;
        data.extend_from_slice(&extra);
        self.files.insert(path.to_owned(), known(data));
        Ok(())
    }

    /// Marks `path` in flight and opens it for writing.
    fn open_in_flight(&mut self, mnt: &Path, path: &str) -> Result<File, String> {
        self.files.insert(path.to_owned(), FileState::InFlight);
        let open = OpenOptions::new().write(true).open(mnt.join(path));
        io("open", path, open)
    }

    /// A write at a random offset, past the end now and then (the gap is a hole).
    fn overwrite(&mut self, mnt: &Path, path: &str) -> Step {
        let mut data = self.data_of(path);
        let off = self.rng.below(data.len() as u64 + 10_000) as usize;
        let new = self.rng.content(300 << 10);
        self.log.push(format!(
            "pwrite {path}: {} at {off} of {}",
            new.len(),
            data.len()
        ));
        let f = self.open_in_flight(mnt, path)?;
        io("pwrite", path, f.write_all_at(&new, off as u64))?;
        self.finish(f, path)?;
        // A write of 0 bytes changes nothing, not even past the end.
        if !new.is_empty() {
            if data.len() < off + new.len() {
                data.resize(off + new.len(), 0);
            }
            data[off..off + new.len()].copy_from_slice(&new);
        }
        self.files.insert(path.to_owned(), known(data));
        Ok(())
    }

    fn truncate(&mut self, mnt: &Path, path: &str) -> Step {
        let mut data = self.data_of(path);
        let len = self.rng.below(data.len() as u64 + 20_000) as usize;
        self.log
            .push(format!("truncate {path}: {} to {len}", data.len()));
        let f = self.open_in_flight(mnt, path)?;
        io("ftruncate", path, f.set_len(len as u64))?;
        self.finish(f, path)?;
        data.resize(len, 0);
        self.files.insert(path.to_owned(), known(data));
        Ok(())
    }

    /// Renames to a new name or over another of this writer's files, maybe in another dir.
    fn rename(&mut self, mnt: &Path, from: &str, files: &[String]) -> Step {
        let to = if self.rng.chance(50) && files.len() > 1 {
            self.rng.pick(files).clone()
        } else {
            self.new_name()
        };
        if to == from {
            return Ok(());
        }
        let data = self.data_of(from);
        self.log.push(format!("rename {from} {to}"));
        self.files.insert(from.to_owned(), FileState::InFlight);
        self.files.insert(to.clone(), FileState::InFlight);
        io(
            "rename",
            from,
            std::fs::rename(mnt.join(from), mnt.join(&to)),
        )?;
        self.removed_at.push(Instant::now());
        self.files.remove(from);
        self.gone.push(from.to_owned());
        self.files.insert(to, known(data));
        Ok(())
    }

    fn unlink(&mut self, mnt: &Path, path: &str) -> Step {
        self.log.push(format!("unlink {path}"));
        self.files.insert(path.to_owned(), FileState::InFlight);
        io("unlink", path, std::fs::remove_file(mnt.join(path)))?;
        self.removed_at.push(Instant::now());
        self.files.remove(path);
        self.gone.push(path.to_owned());
        Ok(())
    }

    fn mkdir(&mut self, mnt: &Path) -> Step {
        self.serial += 1;
        let dir = format!("{}/d{}_{}", self.home(), self.id, self.serial);
        self.log.push(format!("mkdir {dir}"));
        self.dirs.insert(dir.clone(), true);
        io("mkdir", &dir, std::fs::create_dir(mnt.join(&dir)))?;
        self.dirs.insert(dir, false);
        Ok(())
    }

    /// Removes a subdirectory that holds nothing of this writer's (nor anything damaged).
    fn rmdir(&mut self, mnt: &Path) -> Step {
        let empty: Vec<String> = self
            .dirs
            .keys()
            .filter(|d| {
                let prefix = format!("{d}/");
                !self.files.keys().any(|f| f.starts_with(&prefix))
                    && !self.damaged.iter().any(|f| f.starts_with(&prefix))
            })
            .cloned()
            .collect();
        if empty.is_empty() {
            return self.mkdir(mnt);
        }
        let dir = self.rng.pick(&empty).clone();
        self.log.push(format!("rmdir {dir}"));
        self.dirs.insert(dir.clone(), true);
        io("rmdir", &dir, std::fs::remove_dir(mnt.join(&dir)))?;
        self.dirs.remove(&dir);
        self.gone.push(dir);
        Ok(())
    }

    /// After a kill and a remount: known files read back exactly, completed removals stay
    /// removed, in-flight paths settle into whatever state they read as.
    fn verify(&mut self, mnt: &Path, problems: &mut Vec<String>) {
        problems.append(&mut self.unexpected);
        for (path, state) in std::mem::take(&mut self.files) {
            let read = std::fs::read(mnt.join(&path));
            match (state, read) {
                (FileState::Known { data, sha: want }, Ok(got)) => {
                    if got != data {
                        let ops: Vec<&String> =
                            self.log.iter().filter(|l| l.contains(&path)).collect();
                        problems.push(format!(
                            "{path}: closed/synced file reads {} bytes sha256 {}, wrote {} \
                             bytes sha256 {want}; this round: {ops:?}",
                            got.len(),
                            sha(&got),
                            data.len()
                        ));
                    }
                    self.files.insert(path, known(data));
                }
                (FileState::Known { .. }, Err(e)) => {
                    problems.push(format!("{path}: closed/synced file unreadable: {e}"))
                }
                (FileState::InFlight, Ok(got)) => {
                    self.in_flight_seen += 1;
                    self.files.insert(path, known(got));
                }
                (FileState::InFlight, Err(e)) => {
                    self.in_flight_seen += 1;
                    match errno_of(&e) {
                        libc::ENOENT => {}
                        libc::EIO => {
                            self.damaged.insert(path);
                        }
                        _ => problems.push(format!("{path}: in-flight file fails with {e}")),
                    }
                }
            }
        }
        for path in std::mem::take(&mut self.gone) {
            if std::fs::symlink_metadata(mnt.join(&path)).is_ok() {
                problems.push(format!("{path}: removed before the kill, exists again"));
            }
        }
        for (dir, in_flight) in std::mem::take(&mut self.dirs) {
            if in_flight && std::fs::symlink_metadata(mnt.join(&dir)).is_err() {
                continue;
            }
            match std::fs::read_dir(mnt.join(&dir)) {
                Ok(_) => {
                    self.dirs.insert(dir, false);
                }
                Err(e) => problems.push(format!(
                    "{dir}: directory ({}) cannot be listed: {e}",
                    if in_flight { "in flight" } else { "made" }
                )),
            }
        }
        self.log.clear();
    }
}

/// Every path under `dir` (relative to `root`), listing each directory through the mount.
fn tree(root: &Path, dir: &Path, out: &mut BTreeSet<String>, problems: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return problems.push(format!("cannot list {}: {e}", dir.display())),
    };
    for e in entries {
        let e = match e {
            Ok(e) => e,
            Err(e) => return problems.push(format!("listing {}: {e}", dir.display())),
        };
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(rel);
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            tree(root, &path, out, problems);
        }
    }
}

/// The mount holds exactly what the writers know of: nothing lost, nothing extra.
fn check_tree(mnt: &Path, writers: &[Writer], problems: &mut Vec<String>) {
    let mut found = BTreeSet::new();
    tree(mnt, mnt, &mut found, problems);
    let mut want: BTreeSet<String> = BTreeSet::from([COMMON.to_owned()]);
    for w in writers {
        want.insert(w.home());
        want.extend(w.files.keys().cloned());
        want.extend(w.dirs.keys().cloned());
        want.extend(w.damaged.iter().cloned());
    }
    for extra in found.difference(&want) {
        problems.push(format!("{extra}: in the mount but no writer made it"));
    }
    for missing in want.difference(&found) {
        problems.push(format!("{missing}: not listed in the mount"));
    }
}

fn join_all(handles: Vec<JoinHandle<Writer>>) -> Vec<Writer> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handles.iter().all(|h| h.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "a writer is stuck on the dead mount"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// `cofferfs info` opens the header store (recovering its WAL after a crash).
fn assert_info_works(cipherdir: &Path, when: &str) {
    let (code, out, err) = cofferfs(&["info", cipherdir.to_str().unwrap()]);
    assert!(
        code == 0 && out.contains("kek generation:"),
        "cofferfs info fails {when}: {code} {out}{err}"
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

/// Classifies `fsck`'s problem lines: returns the number of orphan key rows, and every line
/// that is neither an orphan row nor a torn chunk or size of a damaged file.
fn fsck_findings(out: &str, damaged: &BTreeSet<String>) -> (usize, Vec<String>) {
    let mut orphans = 0;
    let mut bad = Vec::new();
    let lines = out
        .lines()
        .skip_while(|l| !l.starts_with("problems ("))
        .skip(1)
        .take_while(|l| l.starts_with("  "));
    for line in lines {
        let line = line.trim();
        if line.starts_with("header store: orphan key row ") {
            orphans += 1;
            continue;
        }
        let torn = line.split_once(": ").is_some_and(|(path, what)| {
            damaged.contains(path.trim_start_matches('/'))
                && ((what.starts_with("chunk ") && what.ends_with(" fails authentication"))
                    || what.starts_with("invalid size ")
                    // Format v2: a growth torn between re-sealing the old last chunk and
                    // writing the new one (FORMAT.md, crash safety: "Truncate", "Append").
                    || what.starts_with("truncated: ")
                    || what.starts_with("extended: "))
        });
        if !torn {
            bad.push(line.to_owned());
        }
    }
    (orphans, bad)
}

/// One round: start the writers, kill the daemon after a random delay, remove the dead mount,
/// check the store, remount and verify.
/// Runs the writers, kills the daemon after `delay`, remounts; returns the writers and how
/// many unlinks and renames completed within [`SHRED_WINDOW`] before the kill.
fn kill_round(
    m: &mut Mounted,
    writers: Vec<Writer>,
    delay: Duration,
    round: u64,
) -> (Vec<Writer>, usize) {
    let killed = Arc::new(AtomicBool::new(false));
    let handles = writers
        .into_iter()
        .map(|mut w| {
            w.removed_at.clear();
            let (mnt, killed) = (m.mnt.clone(), killed.clone());
            std::thread::spawn(move || {
                w.run(&mnt, &killed);
                w
            })
        })
        .collect();
    std::thread::sleep(delay);
    killed.store(true, Ordering::SeqCst);
    let kill_at = Instant::now();
    m.kill_daemon();
    let writers = join_all(handles);
    let late_removals = writers
        .iter()
        .flat_map(|w| &w.removed_at)
        .filter(|&&t| t + SHRED_WINDOW >= kill_at)
        .count();
    m.cleanup_dead();
    assert!(!is_mounted(&m.mnt), "the dead mount is still there");
    // Half the rounds open the crashed store with `info` first, half let the daemon do it.
    if round.is_multiple_of(2) {
        assert_info_works(&m.cipherdir, "after a kill");
    }
    m.mount(&[]);
    if !round.is_multiple_of(2) {
        assert_info_works(&m.cipherdir, "after a kill and a remount");
    }
    (writers, late_removals)
}

fn verify_all(m: &Mounted, writers: &mut [Writer], context: &str) {
    let mut problems = Vec::new();
    for w in writers.iter_mut() {
        w.verify(&m.mnt, &mut problems);
    }
    check_tree(&m.mnt, writers, &mut problems);
    assert!(problems.is_empty(), "{context}:\n{}", problems.join("\n"));
}

#[test]
fn kill_9_under_write_load_loses_nothing_closed_or_synced() {
    let seed = env_u64("COFFERFS_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let kills = env_u64("COFFERFS_CRASH_KILLS").unwrap_or(24);
    println!("crash seed {seed}, {kills} kills (rerun: COFFERFS_CRASH_SEED={seed})");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut m = Mounted::new();
    std::fs::create_dir(m.path(COMMON)).unwrap();
    let mut writers: Vec<Writer> = (0..WRITERS).map(|i| Writer::new(i, rng.next())).collect();
    for w in &writers {
        std::fs::create_dir(m.path(&w.home())).unwrap();
    }
    let mut late_removals = 0;
    for round in 0..kills {
        let delay = Duration::from_millis(20 + rng.below(480));
        let late;
        (writers, late) = kill_round(&mut m, writers, delay, round);
        late_removals += late;
        let ctx = format!("seed {seed}, kill {round} after {delay:?}");
        verify_all(&m, &mut writers, &ctx);
    }
    let ops: u64 = writers.iter().map(|w| w.ops).sum();
    let in_flight: u64 = writers.iter().map(|w| w.in_flight_seen).sum();
    let damaged: BTreeSet<String> = writers.iter().flat_map(|w| w.damaged.clone()).collect();
    m.unmount();

    let c = m.cipherdir.to_str().unwrap().to_owned();
    let (code, out, err) = cofferfs(&["fsck", &c]);
    let (orphans, bad) = fsck_findings(&out, &damaged);
    assert!(
        bad.is_empty(),
        "seed {seed}: fsck reports more than crash leftovers: {bad:?}\n{out}{err}"
    );
    assert!(
        orphans <= WRITERS * kills as usize + late_removals,
        "seed {seed}: {orphans} orphan key rows for {kills} kills of {WRITERS} writers and \
         {late_removals} removals just before a kill\n{out}"
    );
    let clean = orphans == 0 && !out.contains("problems (");
    assert_eq!(code, if clean { 0 } else { 26 }, "fsck: {out}{err}");
    let (code, out, err) = cofferfs(&["fsck", "--repair", &c]);
    assert_eq!(
        code,
        if clean { 0 } else { 27 },
        "fsck --repair: {out}{err}"
    );
    let (code, out, err) = cofferfs(&["fsck", &c]);
    assert!(
        code == 0 && out.contains("clean"),
        "fsck after repair: {out}{err}"
    );
    let conn = rusqlite::Connection::open(m.cipherdir.join("cofferfs.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    // Repair moved the damaged files into the quarantine; everything else is as it was.
    m.mount(&[]);
    for w in &mut writers {
        w.damaged.clear();
    }
    verify_all(
        &m,
        &mut writers,
        &format!("seed {seed}, after fsck --repair"),
    );
    m.unmount();
    println!(
        "{kills} kills, {ops} operations completed, {in_flight} in-flight paths settled, \
         {} torn files, {orphans} orphan key rows, {:.1} s",
        damaged.len(),
        started.elapsed().as_secs_f64()
    );
}
