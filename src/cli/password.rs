//! Reading secrets the way gocryptfs users expect: `--passfile FILE`, `--extpass CMD`, piped
//! stdin, or a prompt without echo (asked twice when a new password is set). A password is
//! never taken from the command line and never logged; it lives in a zeroizing buffer.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

/// Where the password comes from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PasswordSource {
    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "extpass")]
    pub passfile: Option<PathBuf>,
    /// Run CMD (with /bin/sh -c) and use the first line of its standard output.
    #[arg(long, value_name = "CMD")]
    pub extpass: Option<String>,
}

/// A secret in a buffer that is wiped on drop.
pub type Secret = Zeroizing<Vec<u8>>;

/// Why no password could be read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Empty password.
    #[error("the password is empty")]
    Empty,
    /// The two entries at a prompt differ.
    #[error("the passwords do not match")]
    Mismatch,
    /// The passfile, stdin or terminal could not be read.
    #[error("cannot read the password: {0}")]
    Io(#[from] std::io::Error),
    /// The extpass program failed.
    #[error("--extpass program failed: {0}")]
    Extpass(String),
}

/// First line of `bytes`, without its line ending.
fn first_line(bytes: &[u8]) -> Secret {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Zeroizing::new(line.to_vec())
}

fn non_empty(s: Secret) -> Result<Secret, PasswordError> {
    if s.is_empty() {
        Err(PasswordError::Empty)
    } else {
        Ok(s)
    }
}

impl PasswordSource {
    /// Reads the password. `confirm` asks twice at a terminal prompt (new passwords).
    pub fn read(&self, prompt: &str, confirm: bool) -> Result<Secret, PasswordError> {
        if let Some(path) = &self.passfile {
            let bytes = Zeroizing::new(std::fs::read(path)?);
            return non_empty(first_line(&bytes));
        }
        if let Some(cmd) = &self.extpass {
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| PasswordError::Extpass(e.to_string()))?;
            let stdout = Zeroizing::new(out.stdout);
            if !out.status.success() {
                return Err(PasswordError::Extpass(format!(
                    "exited with {}",
                    out.status
                )));
            }
            return non_empty(first_line(&stdout));
        }
        if !std::io::stdin().is_terminal() {
            let mut line = Zeroizing::new(Vec::new());
            std::io::stdin().lock().read_until(b'\n', &mut line)?;
            return non_empty(first_line(&line));
        }
        let first = non_empty(Zeroizing::new(
            rpassword::prompt_password(prompt)?.into_bytes(),
        ))?;
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("Repeat: ")?.into_bytes());
            if *again != *first {
                return Err(PasswordError::Mismatch);
            }
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_strips_line_endings() {
        assert_eq!(&first_line(b"pw\nrest")[..], b"pw");
        assert_eq!(&first_line(b"pw\r\n")[..], b"pw");
        assert_eq!(&first_line(b"pw")[..], b"pw");
        assert!(first_line(b"\nx").is_empty());
    }

    #[test]
    fn passfile_and_extpass_give_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret one\nsecond\n").unwrap();
        let src = PasswordSource {
            passfile: Some(f),
            extpass: None,
        };
        assert_eq!(&src.read("", false).unwrap()[..], b"secret one");
        let src = PasswordSource {
            passfile: None,
            extpass: Some("printf 'x y\\nz'".into()),
        };
        assert_eq!(&src.read("", false).unwrap()[..], b"x y");
        let src = PasswordSource {
            passfile: None,
            extpass: Some("exit 3".into()),
        };
        assert!(matches!(
            src.read("", false),
            Err(PasswordError::Extpass(_))
        ));
        let src = PasswordSource {
            passfile: None,
            extpass: Some("echo".into()),
        };
        assert!(matches!(src.read("", false), Err(PasswordError::Empty)));
    }
}
