//! What a Transit slot keeps in `slots.params`: where its slot key is encrypted (server
//! address, mount, key name) and the Vault ciphertext itself. A small JSON object, so that a
//! human with `sqlite3` can read it and a later field can be added without a format change:
//!
//! ```json
//! {"v":1,"addr":"https://vault.example:8200","mount":"transit","key":"cofferfs","ciphertext":"vault:v1:…"}
//! ```
//!
//! The column is untrusted input (the store may be tampered with): `decode` checks every
//! field, and nothing it yields is trusted before the KEK it opens authenticates.

use serde::{Deserialize, Serialize};

/// Version of the JSON object; a different one is refused (as an unknown slot kind would be).
pub const TRANSIT_PARAMS_VERSION: u32 = 1;

/// Longest ciphertext accepted (Vault's for 32 bytes is about 80 characters).
const MAX_CIPHERTEXT_LEN: usize = 4096;

/// The parameters of one Transit slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitParams {
    /// [`TRANSIT_PARAMS_VERSION`].
    pub v: u32,
    /// The server address the slot was made with: informational, `VAULT_ADDR` (or
    /// `BAO_ADDR`) decides where an unlock goes.
    pub addr: String,
    /// Mount path of the Transit engine (`transit` by default), without slashes around it.
    pub mount: String,
    /// Name of the Transit key.
    pub key: String,
    /// `vault:vN:<base64>`: the slot key encrypted by version N of the key.
    pub ciphertext: String,
}

impl TransitParams {
    /// The `slots.params` text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain strings serialise")
    }

    /// Parses and checks a `slots.params` text.
    pub fn decode(text: &str) -> Result<Self, String> {
        let p: TransitParams = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if p.v != TRANSIT_PARAMS_VERSION {
            return Err(format!(
                "version {} (this cofferfs reads {TRANSIT_PARAMS_VERSION})",
                p.v
            ));
        }
        check_path_part("mount", &p.mount, true)?;
        check_path_part("key", &p.key, false)?;
        if p.ciphertext.len() > MAX_CIPHERTEXT_LEN || p.key_version().is_none() {
            return Err("ciphertext is not a vault:vN:… string".into());
        }
        Ok(p)
    }

    /// The Transit key version that encrypted the slot key (`N` of `vault:vN:`).
    pub fn key_version(&self) -> Option<u32> {
        let rest = self.ciphertext.strip_prefix("vault:v")?;
        let (n, body) = rest.split_once(':')?;
        if body.is_empty() {
            return None;
        }
        n.parse().ok().filter(|&n| n > 0)
    }
}

/// A mount path (segments joined by `/`) or a key name goes into a URL path: only the
/// characters Vault allows in them, no empty or dot segment, so a tampered store cannot
/// aim a request at another endpoint.
pub fn check_path_part(what: &str, s: &str, slashes: bool) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let bad = s.is_empty()
        || s.len() > 256
        || s.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == ".." || !seg.chars().all(ok_char))
        || (!slashes && s.contains('/'));
    if bad {
        return Err(format!(
            "{what} {s:?}: letters, digits, '-', '_' and '.' only{}",
            if slashes {
                ", segments joined by '/'"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TransitParams {
        TransitParams {
            v: 1,
            addr: "http://127.0.0.1:8200".into(),
            mount: "transit".into(),
            key: "cofferfs".into(),
            ciphertext: "vault:v3:abcd".into(),
        }
    }

    #[test]
    fn round_trip_and_version() {
        let p = sample();
        assert_eq!(TransitParams::decode(&p.encode()).unwrap(), p);
        assert_eq!(p.key_version(), Some(3));
    }

    #[test]
    fn hostile_params_are_refused() {
        for (mount, key, ct) in [
            ("../sys", "k", "vault:v1:x"),
            ("transit", "a/b", "vault:v1:x"),
            ("transit", "k?x=1", "vault:v1:x"),
            ("", "k", "vault:v1:x"),
            ("transit", "k", "vault:v0:x"),
            ("transit", "k", "vault:v1:"),
            ("transit", "k", "plain"),
        ] {
            let p = TransitParams {
                mount: mount.into(),
                key: key.into(),
                ciphertext: ct.into(),
                ..sample()
            };
            assert!(
                TransitParams::decode(&p.encode()).is_err(),
                "{mount} {key} {ct}"
            );
        }
        assert!(TransitParams::decode("{\"v\":2}").is_err());
        assert!(TransitParams::decode("not json").is_err());
    }
}
