//! The control protocol, version 1 (docs/CONTROL.md): one request and one reply per
//! connection, each a frame of a 4-byte big-endian length followed by that many bytes of a
//! JSON object. A frame longer than [`MAX_FRAME`] is refused before it is read, so a client
//! cannot make the daemon allocate more than that.
//!
//! Secrets travel base64-encoded in JSON strings. Every frame that may hold one is read into
//! and written from a buffer sized up front and wiped on drop ([`Frame`]); a secret is decoded
//! straight out of that buffer (borrowed, never copied into a `String`) into a wiped buffer of
//! its own ([`SecretBytes`]).

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The protocol version this build speaks; a request of another version gets an error reply.
pub const VERSION: u32 = 1;

/// Largest frame accepted, in bytes (1 MiB): a key file sent as a secret must stay under
/// about 700 KiB (base64 grows it by a third); larger ones work offline only.
pub const MAX_FRAME: usize = 1 << 20;

/// A frame's bytes, in a buffer wiped on drop.
pub type Frame = Zeroizing<Vec<u8>>;

/// Why a frame could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The peer closed before a whole frame arrived (or sent nothing at all).
    #[error("truncated message: the connection closed after {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced (4 for the length itself).
        want: usize,
    },
    /// The announced length is zero or above [`MAX_FRAME`].
    #[error("message of {0} bytes refused (at most {MAX_FRAME})")]
    Oversized(usize),
    /// Not the JSON of a known request or reply.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A request of a protocol version this daemon does not speak.
    #[error("protocol version {0} is not supported (this cofferfs speaks {VERSION})")]
    Version(u32),
    /// The socket failed (time-out included).
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads `buf.len()` bytes; a short read is [`ProtocolError::Truncated`].
fn read_full(r: &mut impl Read, buf: &mut [u8], want: usize) -> Result<(), ProtocolError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(ProtocolError::Truncated { got, want }),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one frame: its length, checked against [`MAX_FRAME`] before anything is allocated,
/// then its bytes into a wiped buffer of exactly that size.
pub fn read_frame(r: &mut impl Read) -> Result<Frame, ProtocolError> {
    let mut len = [0u8; 4];
    read_full(r, &mut len, 4)?;
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME {
        return Err(ProtocolError::Oversized(n));
    }
    let mut buf = Zeroizing::new(vec![0u8; n]);
    read_full(r, &mut buf, n)?;
    Ok(buf)
}

/// Writes one frame (length, then the bytes) in one `write_all` of a wiped buffer.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> Result<(), ProtocolError> {
    if body.is_empty() || body.len() > MAX_FRAME {
        return Err(ProtocolError::Oversized(body.len()));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 4));
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()?;
    Ok(())
}

/// Serializes `msg` into a wiped buffer sized for the largest frame (never reallocated, so
/// no copy of a secret is left behind in freed memory).
pub fn encode<T: Serialize>(msg: &T) -> Result<Frame, ProtocolError> {
    let mut out = Zeroizing::new(Vec::with_capacity(MAX_FRAME + 1));
    serde_json::to_writer(&mut *out, msg).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if out.len() > MAX_FRAME {
        return Err(ProtocolError::Oversized(out.len()));
    }
    Ok(out)
}

/// A secret's bytes: base64 in the JSON, a wiped buffer in memory. Its `Debug` shows the
/// length only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

impl SecretBytes {
    /// A copy of `bytes` in a wiped buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(Zeroizing::new(bytes.to_vec()))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = Zeroizing::new(String::with_capacity(self.0.len().div_ceil(3) * 4 + 4));
        STANDARD.encode_string(&*self.0, &mut text);
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed from the frame: a string with JSON escapes (which base64 never needs) is
        // refused rather than copied into an unwiped `String`.
        let text: &'de str = <&'de str>::deserialize(d)?;
        let mut out = Zeroizing::new(vec![0u8; text.len() / 4 * 3 + 3]);
        let n = STANDARD
            .decode_slice(text.as_bytes(), &mut out[..])
            .map_err(|e| serde::de::Error::custom(format!("secret is not base64: {e}")))?;
        out.truncate(n);
        Ok(SecretBytes(out))
    }
}

/// The kind of slot a proof's secret is for (as `keystore::SlotKind`, in the wire's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofKind {
    /// A password.
    Password,
    /// A key file's bytes.
    Keyfile,
    /// A Transit slot's key, as Vault decrypted it for the client.
    Transit,
    /// A PKCS#11 slot's key, as the token decrypted it for the client (the PIN never
    /// reaches the daemon).
    Pkcs11,
}

/// The secret of an existing slot: every request that changes keys, or reads content
/// (`fsck`, `reencrypt`), carries one, and the daemon checks it against the slots as an
/// unlock does (access to the socket is not authority).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    /// What kind of slot it opens.
    pub kind: ProofKind,
    /// The secret.
    pub secret: SecretBytes,
    /// Only this slot is tried (`--slot`, or the Transit slot the key belongs to).
    #[serde(default)]
    pub slot: Option<u32>,
}

/// Argon2id parameters of a new password, as `crypto::KdfParams`; an unset one keeps the
/// slot's own (`passwd`) or the default (`keys add`). The daemon checks the bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kdf {
    /// Memory, KiB.
    pub m_kib: Option<u32>,
    /// Passes.
    pub t: Option<u32>,
    /// Lanes.
    pub p: Option<u32>,
}

/// A new slot's secret (`keys add`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NewSecret {
    /// A password slot with these Argon2id parameters.
    Password {
        /// The new password.
        secret: SecretBytes,
        /// Its KDF parameters.
        kdf: Kdf,
    },
    /// A key-file slot.
    Keyfile {
        /// The key file's bytes.
        secret: SecretBytes,
    },
    /// A Transit slot: the slot key Vault encrypted, and the slot's parameters (as the
    /// header store keeps them, `keystore::TransitParams::encode`).
    Transit {
        /// The random slot key.
        secret: SecretBytes,
        /// The encoded Transit parameters.
        params: String,
    },
    /// A PKCS#11 slot: the slot key the token sealed, and the slot's parameters (as the
    /// header store keeps them, `keystore::Pkcs11Params::encode`).
    Pkcs11 {
        /// The random slot key.
        secret: SecretBytes,
        /// The encoded PKCS#11 parameters.
        params: String,
    },
}

/// What a client asks of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Where and since when the volume is mounted, open files, KEK generation, rotation.
    Status,
    /// Re-wrap password slot `slot` (default: the slot `auth` opens) under a new password.
    Passwd {
        /// The current secret.
        auth: Proof,
        /// The slot to change.
        slot: Option<u32>,
        /// The new password.
        new_secret: SecretBytes,
        /// Argon2id parameters (unset ones: the slot's own).
        kdf: Kdf,
    },
    /// Add a slot.
    KeysAdd {
        /// The secret of an existing slot.
        auth: Proof,
        /// The new slot's label.
        label: String,
        /// The new slot's secret.
        new: NewSecret,
    },
    /// Remove slot `slot`; `auth` must open a slot that stays.
    KeysRemove {
        /// The secret of a slot that stays.
        auth: Proof,
        /// The slot to remove.
        slot: u32,
    },
    /// Replace the KEK; the daemon's rotation thread re-wraps the key rows in batches.
    Rotate {
        /// The secret of the slot that is kept (re-wrapped under the new KEK).
        auth: Proof,
        /// Remove every other slot (required when there are others).
        drop_other_slots: bool,
        /// Key rows per transaction (unset: the daemon's default, 200).
        #[serde(default)]
        batch_rows: Option<usize>,
    },
    /// New keys and rewritten content for these plaintext paths (relative to the volume
    /// root).
    Reencrypt {
        /// Any slot's secret.
        auth: Proof,
        /// The paths.
        paths: Vec<String>,
    },
    /// Check the volume (never repairs online).
    Fsck {
        /// Any slot's secret.
        auth: Proof,
    },
}

impl Request {
    /// The request's name on the wire, for logs (never its contents).
    pub fn op(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Passwd { .. } => "passwd",
            Request::KeysAdd { .. } => "keys_add",
            Request::KeysRemove { .. } => "keys_remove",
            Request::Rotate { .. } => "rotate",
            Request::Reencrypt { .. } => "reencrypt",
            Request::Fsck { .. } => "fsck",
        }
    }
}

/// A request with the protocol version, as framed.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// Only the version of a request: read first, so that a request of another version is
/// answered "unsupported version" and not "malformed".
#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// Parses a request frame; checks the version first.
pub fn decode_request(frame: &[u8]) -> Result<Request, ProtocolError> {
    let v: VersionOnly =
        serde_json::from_slice(frame).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if v.v != VERSION {
        return Err(ProtocolError::Version(v.v));
    }
    let env: RequestEnvelope =
        serde_json::from_slice(frame).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    Ok(env.request)
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// Whether the request was done.
    pub ok: bool,
    /// The exit code the command ends with (0 when done; the README's table).
    pub code: i32,
    /// Text for the user: what was done, or the error (one line, no secret).
    pub message: String,
    /// Structured result (`status`, `fsck`'s report lines), when there is one.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Reply {
    /// A successful reply.
    pub fn done(message: impl Into<String>, data: serde_json::Value) -> Self {
        Reply {
            v: VERSION,
            ok: true,
            code: 0,
            message: message.into(),
            data,
        }
    }

    /// A refusal or failure with the exit code the command should end with.
    pub fn error(code: i32, message: impl Into<String>) -> Self {
        Reply {
            v: VERSION,
            ok: false,
            code,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof() -> Proof {
        Proof {
            kind: ProofKind::Password,
            secret: SecretBytes::from_slice(b"hunter2\"\\\n"),
            slot: None,
        }
    }

    #[test]
    fn requests_round_trip_through_frames() {
        let req = RequestEnvelope {
            v: VERSION,
            request: Request::Passwd {
                auth: proof(),
                slot: Some(3),
                new_secret: SecretBytes::from_slice(&[0, 255, 7]),
                kdf: Kdf {
                    m_kib: Some(8192),
                    t: None,
                    p: Some(1),
                },
            },
        };
        let body = encode(&req).unwrap();
        let mut wire = Vec::new();
        write_frame(&mut wire, &body).unwrap();
        let frame = read_frame(&mut &wire[..]).unwrap();
        match decode_request(&frame).unwrap() {
            Request::Passwd {
                auth,
                slot,
                new_secret,
                kdf,
            } => {
                assert_eq!(auth.secret.expose(), b"hunter2\"\\\n");
                assert_eq!(slot, Some(3));
                assert_eq!(new_secret.expose(), &[0, 255, 7]);
                assert_eq!((kdf.m_kib, kdf.t), (Some(8192), None));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let text = format!("{:?}", proof());
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn oversized_and_empty_frames_are_refused_before_reading() {
        let mut wire = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(b"{}");
        assert!(matches!(
            read_frame(&mut &wire[..]),
            Err(ProtocolError::Oversized(n)) if n == MAX_FRAME + 1
        ));
        let wire = 0u32.to_be_bytes();
        assert!(matches!(
            read_frame(&mut &wire[..]),
            Err(ProtocolError::Oversized(0))
        ));
    }

    #[test]
    fn truncated_frames_say_so() {
        let mut wire = 10u32.to_be_bytes().to_vec();
        wire.extend_from_slice(b"{\"v\"");
        assert!(matches!(
            read_frame(&mut &wire[..]),
            Err(ProtocolError::Truncated { got: 4, want: 10 })
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0][..]),
            Err(ProtocolError::Truncated { got: 2, want: 4 })
        ));
    }

    #[test]
    fn unknown_malformed_and_other_versions_are_told_apart() {
        assert!(matches!(
            decode_request(br#"{"v":1,"op":"format_disk"}"#),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(b"\xff\x00garbage"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(br#"{"v":2,"op":"status"}"#),
            Err(ProtocolError::Version(2))
        ));
        assert!(matches!(
            decode_request(br#"{"v":1,"op":"status"}"#),
            Ok(Request::Status)
        ));
        // A secret that is not plain base64 (here with a JSON escape) is refused.
        assert!(matches!(
            decode_request(
                br#"{"v":1,"op":"fsck","auth":{"kind":"password","secret":"aGk\u003d"}}"#
            ),
            Err(ProtocolError::Malformed(_))
        ));
    }
}
