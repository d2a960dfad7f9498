//! A throwaway SoftHSM2 (`apt-get install softhsm2`): its own `SOFTHSM2_CONF` and token
//! directory per test, tokens made with `softhsm2-util --init-token --free`. No daemon: the
//! tokens are files, removed with the temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The module Debian's softhsm2 package installs.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The SO PIN of every test token.
pub const SO_PIN: &str = "so-pin-8642";

/// A SoftHSM2 configuration and its token directory.
pub struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    /// An empty token directory and a configuration naming it (file object store).
    pub fn new() -> Self {
        assert!(
            Path::new(MODULE).exists() && which("softhsm2-util"),
            "SoftHSM2 is missing: apt-get install softhsm2 (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        SoftHsm { dir }
    }

    /// The `SOFTHSM2_CONF` value; every cofferfs child of the test gets it.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The token directory.
    pub fn tokendir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// A new token in the first free slot; returns its serial.
    pub fn init_token(&self, label: &str, pin: &str) -> String {
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", SO_PIN])
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.serial(label).expect("the token just made")
    }

    /// The serial of the token labelled `label`, from `softhsm2-util --show-slots`.
    pub fn serial(&self, label: &str) -> Option<String> {
        let out = Command::new("softhsm2-util")
            .arg("--show-slots")
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut serial = None;
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix("Serial number:") {
                serial = Some(s.trim().to_owned());
            }
            if line
                .strip_prefix("Label:")
                .is_some_and(|l| l.trim() == label)
            {
                return serial;
            }
        }
        None
    }

    /// The token directory of token `label` (SoftHSM2 keeps one directory per token).
    pub fn token_dir(&self, label: &str) -> PathBuf {
        let mut padded = label.as_bytes().to_vec();
        padded.resize(32, b' ');
        for entry in std::fs::read_dir(self.tokendir()).unwrap() {
            let dir = entry.unwrap().path();
            let bytes = std::fs::read(dir.join("token.object")).unwrap();
            if bytes.windows(32).any(|w| w == padded) {
                return dir;
            }
        }
        panic!("no token labelled {label}");
    }

    /// Copies token `label` of `self` into `other` (as moving a card to another reader).
    pub fn copy_token_to(&self, label: &str, other: &SoftHsm) {
        let from = self.token_dir(label);
        let to = other.tokendir().join(from.file_name().unwrap());
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&from)
            .arg(&to)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Deletes every object of token `label` but the token itself (its keys are gone).
    pub fn delete_objects(&self, label: &str) {
        for entry in std::fs::read_dir(self.token_dir(label)).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            if name.ends_with(".object") && name != "token.object" {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }

    /// Removes the token labelled `label` (as unplugging it would).
    pub fn delete_token(&self, label: &str) {
        let out = Command::new("softhsm2-util")
            .args(["--delete-token", "--token", label])
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// CKF_USER_PIN_LOCKED of `CK_TOKEN_INFO.flags` (PKCS#11 2.40, 5.4).
const CKF_USER_PIN_LOCKED: u64 = 0x0004_0000;
/// SoftHSM2's vendor attribute holding a token's flags in `token.object` (CKA_OS_TOKENFLAGS).
const CKA_OS_TOKENFLAGS: u64 = 0x8000_534b;

impl SoftHsm {
    /// Marks the user PIN of token `label` locked, as a token does after its retry limit.
    /// SoftHSM2 itself never locks a user PIN (it only raises CKF_USER_PIN_COUNT_LOW after a
    /// wrong one), so the flag is set in its file object store: an attribute of type
    /// CKA_OS_TOKENFLAGS, kind 2 (an unsigned long), big-endian, in `token.object`.
    pub fn lock_user_pin(&self, label: &str) {
        let mut tag = CKA_OS_TOKENFLAGS.to_be_bytes().to_vec();
        tag.extend_from_slice(&2u64.to_be_bytes());
        let file = self.token_dir(label).join("token.object");
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes
            .windows(16)
            .position(|w| w == tag)
            .expect("token.object has CKA_OS_TOKENFLAGS")
            + 16;
        let flags = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        bytes[at..at + 8].copy_from_slice(&(flags | CKF_USER_PIN_LOCKED).to_be_bytes());
        std::fs::write(&file, bytes).unwrap();
    }
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
