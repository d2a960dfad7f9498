//! Shared helpers for the integration tests: throwaway volumes with cheap Argon2 parameters.
#![allow(dead_code)]

pub mod damage;
pub mod kill;
pub mod mount;
pub mod rng;
pub mod softhsm;
pub mod stopped;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use cofferfs::crypto::KdfParams;
use cofferfs::volume::{self, InitOptions, Volume};

/// The password of every test volume.
pub const PASSWORD: &[u8] = b"correct horse";

/// A fresh volume in a temp dir, with cheap KDF parameters.
pub struct TestVolume {
    pub dir: tempfile::TempDir,
}

impl TestVolume {
    pub fn new() -> Self {
        Self::with(InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            ..Default::default()
        })
    }

    pub fn with(opts: InitOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        volume::init(&dir.path().join("c"), PASSWORD, &opts).unwrap();
        TestVolume { dir }
    }

    pub fn cipherdir(&self) -> PathBuf {
        self.dir.path().join("c")
    }

    pub fn open(&self) -> Volume {
        open_volume(&self.cipherdir(), PASSWORD).unwrap()
    }

    /// Path of a raw ciphertext file `name` in the cipherdir (tests name them freely: the
    /// volume layer does not care about names).
    pub fn blob(&self, name: &str) -> PathBuf {
        self.cipherdir().join(name)
    }
}

/// `Volume::open` for a test that opens a volume in this process right after another open (or
/// a child process) of it closed. The volume lock of that open can outlive it for a moment: a
/// process that another test thread forks in the meantime shares the lock fd until it calls
/// exec (which closes it). So `Locked`, and only `Locked`, is retried for a while.
pub fn open_volume(cipherdir: &Path, secret: &[u8]) -> volume::Result<Volume> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Volume::open(cipherdir, secret, None) {
            Err(volume::VolumeError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            r => return r,
        }
    }
}

/// The password of the committed fixture volumes in `tests/fixtures`.
pub const FIXTURE_PASSWORD: &str = "fixture password";

/// Copies (`cp -a`) the committed fixture cipherdir `tests/fixtures/<name>` to `to`, so a test
/// may mount, write and damage the copy.
pub fn copy_fixture(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {}", from.display());
}

/// A private copy of the fixture `name` in a temp dir: (the temp dir that owns it, the copy).
pub fn fixture_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join(name);
    copy_fixture(name, &to);
    (dir, to)
}

/// The format version in a ciphertext file's header.
pub fn header_version(blob: &Path) -> u16 {
    let b = std::fs::read(blob).unwrap();
    u16::from_be_bytes([b[4], b[5]])
}

pub fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

/// `close(2)` with its result: on a FUSE mount it sends FLUSH, which can fail (a dead daemon,
/// a full disk), whereas dropping a `File` hides the error.
pub fn close(f: File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: the fd was just taken out of its owner, so it is open and closed exactly once.
    if unsafe { libc::close(f.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bytes `0..len` of a recognisable pattern, different per `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes `n` files `<prefix><i>` of different sizes through the volume layer (synced);
/// returns name → content.
pub fn write_files(
    vol: &Volume,
    c: &Path,
    prefix: &str,
    n: usize,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let data = pattern(i * 1777 + 1, i as u8);
        let f = vol.create_file(rw(&c.join(&name))).unwrap();
        f.write_at(&data, 0).unwrap();
        f.sync(false).unwrap();
        files.insert(name, data);
    }
    files
}

/// The whole plaintext of the file at `path` through the volume layer.
pub fn read_file(vol: &Volume, path: &Path) -> Vec<u8> {
    let f = vol.open_file(rw(path)).unwrap();
    let n = f.plain_size().unwrap() as usize;
    let mut buf = vec![0; n];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), n);
    buf
}
