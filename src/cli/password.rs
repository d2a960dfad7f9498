//! Reading secrets the way gocryptfs users expect: `--passfile FILE`, `--extpass CMD`, piped
//! stdin, or a prompt without echo (asked twice when a new password is set). A password is
//! never taken from the command line and never logged; it lives in a zeroizing buffer.
//!
//! Every source is read into one buffer sized up front and wiped on drop, never into a `Vec`
//! that grows (each reallocation would leave a copy of the bytes read so far in freed heap),
//! and piped stdin is read a byte at a time straight from fd 0: std's buffered stdin would
//! keep the line, and the one after it, in its 8 KiB buffer for the life of the process.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;
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

/// Longest password accepted, in bytes (a longer first line is refused, not cut).
pub const MAX_PASSWORD_LEN: usize = 4096;

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
    /// The first line is longer than [`MAX_PASSWORD_LEN`].
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

/// Reads from `r` into a wiped buffer sized up front, up to the first newline (or end of
/// input), and returns that first line. `byte_at_a_time` leaves everything after the newline
/// unread (piped stdin, where the next line may be a new password).
fn read_first_line(r: &mut impl Read, byte_at_a_time: bool) -> Result<Secret, PasswordError> {
    // The line, its "\r\n", and one byte more to tell a too-long line apart.
    let mut buf = Zeroizing::new(vec![0u8; MAX_PASSWORD_LEN + 3]);
    let mut len = 0;
    while len < buf.len() {
        let end = if byte_at_a_time { len + 1 } else { buf.len() };
        let n = match r.read(&mut buf[len..end]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let newline = buf[len..len + n].contains(&b'\n');
        len += n;
        if newline {
            break;
        }
    }
    let line = first_line(&buf[..len]);
    if line.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(line)
}

/// Fd 0 without std's buffer in between.
struct RawStdin;

impl Read for RawStdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(rustix::io::read(std::io::stdin().as_fd(), buf)?)
    }
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
            super::harden::warn_if_exposed(path, "passfile");
            let mut f = std::fs::File::open(path)?;
            return non_empty(read_first_line(&mut f, false)?);
        }
        if let Some(cmd) = &self.extpass {
            return non_empty(run_extpass(cmd)?);
        }
        if !std::io::stdin().is_terminal() {
            return non_empty(read_first_line(&mut RawStdin, true)?);
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

/// Runs the extpass command and returns the first line of its output. The rest of the output
/// is read (so the program is not killed by `SIGPIPE`) into a wiped scratch buffer and dropped.
fn run_extpass(cmd: &str) -> Result<Secret, PasswordError> {
    let fail = |e: std::io::Error| PasswordError::Extpass(e.to_string());
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(fail)?;
    let mut out = child.stdout.take().expect("stdout is piped");
    let line = read_first_line(&mut out, false);
    let mut scratch = Zeroizing::new([0u8; 4096]);
    while matches!(out.read(&mut scratch[..]), Ok(n) if n > 0) {}
    drop(out);
    let status = child.wait().map_err(fail)?;
    if !status.success() {
        return Err(PasswordError::Extpass(format!("exited with {status}")));
    }
    line
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
        let src = PasswordSource {
            passfile: None,
            extpass: Some("printf 'pw\\n'; head -c 100000 /dev/zero".into()),
        };
        assert_eq!(&src.read("", false).unwrap()[..], b"pw");
    }

    #[test]
    fn first_line_is_read_without_the_rest_and_length_is_bounded() {
        let mut r: &[u8] = b"one\ntwo\n";
        assert_eq!(&read_first_line(&mut r, true).unwrap()[..], b"one");
        assert_eq!(r, b"two\n");
        let long = vec![b'x'; MAX_PASSWORD_LEN];
        let mut r: &[u8] = &[&long[..], b"\r\n"].concat();
        assert_eq!(
            read_first_line(&mut r, false).unwrap().len(),
            MAX_PASSWORD_LEN
        );
        let mut r: &[u8] = &[&long[..], b"y\n"].concat();
        assert!(matches!(
            read_first_line(&mut r, false),
            Err(PasswordError::TooLong)
        ));
    }
}
