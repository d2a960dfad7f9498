//! The share's envelope: a standard age file (age-encryption.org/v1), made and opened with the
//! `age` crate, so that Debian's `age -d -i IDENTITY SHARE` opens it too and no public-key
//! cryptography of our own is involved. Recipients are what age takes: X25519 `age1…` keys
//! and `ssh-ed25519`/`ssh-rsa` public keys; identities are `AGE-SECRET-KEY-1…` files (as
//! `age-keygen` writes them) and unencrypted ssh private keys. Pure over bytes.

use std::io::{Read, Write};

use zeroize::Zeroizing;

/// Identities that may open a share.
pub type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

/// Why recipients, identities or the age file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AgeError {
    /// A recipient string that is neither an age X25519 key nor an ssh public key.
    #[error("recipient {0:?} is not an age1… key or an ssh-ed25519/ssh-rsa public key")]
    BadRecipient(String),
    /// The identity file holds no identity we can use.
    #[error("identity file: {0}")]
    BadIdentity(String),
    /// Encryption failed (the recipients do not go together, or an I/O error).
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    /// The file is not an age file, no identity opens it, or it was tampered with.
    #[error("{0}")]
    Decrypt(String),
}

/// A parsed recipient, keeping the text it was given as (recorded in the header store).
pub struct Recipient {
    /// The recipient as given (trimmed).
    pub text: String,
    key: Box<dyn age::Recipient + Send>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipient({})", self.text)
    }
}

/// Parses one recipient: `age1…` or an ssh public key line.
pub fn parse_recipient(s: &str) -> Result<Recipient, AgeError> {
    let text = s.trim().to_owned();
    let bad = || AgeError::BadRecipient(text.clone());
    let key: Box<dyn age::Recipient + Send> = if text.starts_with("age1") {
        Box::new(text.parse::<age::x25519::Recipient>().map_err(|_| bad())?)
    } else if text.starts_with("ssh-") {
        Box::new(text.parse::<age::ssh::Recipient>().map_err(|_| bad())?)
    } else {
        return Err(bad());
    };
    Ok(Recipient { text, key })
}

/// Parses a recipients file as `age -R` does: one recipient a line, blank lines and lines
/// starting with `#` ignored.
pub fn parse_recipients_file(text: &str) -> Result<Vec<Recipient>, AgeError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_recipient)
        .collect()
}

/// Encrypts `payload` to every recipient as one binary age file.
pub fn encrypt(payload: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, AgeError> {
    let e = |x: &dyn std::fmt::Display| AgeError::Encrypt(x.to_string());
    let enc = age::Encryptor::with_recipients(
        recipients
            .iter()
            .map(|r| r.key.as_ref() as &dyn age::Recipient),
    )
    .map_err(|x| e(&x))?;
    let mut out = Vec::with_capacity(payload.len() + 512);
    let mut w = enc.wrap_output(&mut out).map_err(|x| e(&x))?;
    w.write_all(payload).map_err(|x| e(&x))?;
    w.finish().map_err(|x| e(&x))?;
    Ok(out)
}

/// The identities in an identity file: an age identity file (`AGE-SECRET-KEY-1…` lines,
/// comments allowed) or an unencrypted OpenSSH/PEM private key. `name` is for messages.
pub fn parse_identities(bytes: &[u8], name: &str) -> Result<Identities, AgeError> {
    let bad = |x: &dyn std::fmt::Display| AgeError::BadIdentity(x.to_string());
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let id =
            age::ssh::Identity::from_buffer(bytes, Some(name.to_owned())).map_err(|x| bad(&x))?;
        return match id {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(id)]),
            age::ssh::Identity::Encrypted(_) => Err(bad(
                &"passphrase-protected ssh keys are not supported (decrypt a copy with ssh-keygen -p)",
            )),
            age::ssh::Identity::Unsupported(_) => Err(bad(&"unsupported ssh key type")),
        };
    }
    let ids = age::IdentityFile::from_buffer(bytes)
        .map_err(|x| bad(&x))?
        .into_identities()
        .map_err(|x| bad(&x))?;
    if ids.is_empty() {
        return Err(bad(&"no AGE-SECRET-KEY-1 identity in the file"));
    }
    Ok(ids)
}

/// Decrypts an age file with any of `identities`; the plaintext is wiped on drop.
pub fn decrypt(
    file: &[u8],
    identities: &[Box<dyn age::Identity + Send + Sync>],
) -> Result<Zeroizing<Vec<u8>>, AgeError> {
    let d = |x: &dyn std::fmt::Display| AgeError::Decrypt(x.to_string());
    let dec = age::Decryptor::new_buffered(file).map_err(|x| d(&x))?;
    let mut r = dec
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|x| d(&x))?;
    let mut out = Zeroizing::new(Vec::new());
    r.read_to_end(&mut out).map_err(|x| d(&x))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_identity() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let r = parse_recipient(&a.to_public().to_string()).unwrap();
        let file = encrypt(b"payload", &[r]).unwrap();
        let ids: Identities = vec![Box::new(a)];
        assert_eq!(&decrypt(&file, &ids).unwrap()[..], b"payload");
        let wrong: Identities = vec![Box::new(b)];
        assert!(decrypt(&file, &wrong).is_err());
        assert!(parse_recipient("not-a-key").is_err());
        assert!(parse_recipient("age1qqqq").is_err());
    }
}
