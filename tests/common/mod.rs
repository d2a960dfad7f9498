//! Shared helpers for the integration tests: throwaway volumes with cheap Argon2 parameters.
#![allow(dead_code)]

pub mod damage;
pub mod mount;
pub mod rng;

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
        Volume::open(&self.cipherdir(), PASSWORD, None).unwrap()
    }

    /// Path of a raw ciphertext file `name` in the cipherdir (tests name them freely: the
    /// volume layer does not care about names).
    pub fn blob(&self, name: &str) -> PathBuf {
        self.cipherdir().join(name)
    }
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
