//! Process hardening for every command that may hold a secret, and the checks on secret
//! files that ssh users expect.
//!
//! - No core dumps: `PR_SET_DUMPABLE 0` (also honoured by a piped `core_pattern` such as
//!   systemd-coredump, which ignores `RLIMIT_CORE`; it also keeps other processes of the same
//!   user from reading our memory through `/proc/PID/mem` or `ptrace`) and `RLIMIT_CORE 0`.
//! - A passfile or key file that group or others may read is used, with a warning (as ssh
//!   warns about a private key), since refusing would break scripts that work today.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

/// Makes the process non-dumpable and its core-file limit 0. Best effort: a failure is
/// logged, never fatal (neither call fails on Linux for an ordinary process).
pub fn protect_process() {
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        log::warn!("cannot make the process non-dumpable: {e}");
    }
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, zero) {
        log::warn!("cannot set RLIMIT_CORE to 0: {e}");
    }
}

/// The warning for a secret file that group or others may read, or `None`. Only regular
/// files are judged: a pipe such as `--passfile <(pass show x)` has no meaningful mode.
pub fn exposure_warning(path: &Path, what: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    (meta.is_file() && mode & 0o077 != 0).then(|| {
        format!(
            "warning: {what} {} is readable or writable by others (mode {mode:04o}); \
             `chmod 600 {}` it",
            path.display(),
            path.display()
        )
    })
}

/// Prints [`exposure_warning`] when there is one.
pub fn warn_if_exposed(path: &Path, what: &str) {
    if let Some(w) = exposure_warning(path, what) {
        eprintln!("cofferfs: {w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_warning_judges_group_and_other_bits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "pw\n").unwrap();
        for (mode, warns) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                exposure_warning(&f, "passfile").is_some(),
                warns,
                "{mode:o}"
            );
        }
        assert!(exposure_warning(dir.path(), "passfile").is_none());
    }
}
