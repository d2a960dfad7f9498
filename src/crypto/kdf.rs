//! Slot-key derivation. Argon2id turns a password into a slot key; its parameters are stored
//! per slot and are untrusted when read back, so they are bounded before any hashing starts: a
//! tampered header store must not be able to ask for a terabyte of memory or a year of CPU.
//! A key file is already high-entropy, so HKDF-SHA256 (no work factor) turns it into a slot key.

use zeroize::Zeroizing;

use super::{CryptoError, SlotKey};

/// Argon2id cost parameters of one password slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Number of passes.
    pub t: u32,
    /// Degree of parallelism (lanes).
    pub p: u32,
}

/// Length of a slot's random salt.
pub const SALT_LEN: usize = 16;
/// Default memory: 64 MiB, as gocryptfs and the `argon2` RFC's second recommendation.
pub const DEFAULT_M_KIB: u32 = 64 * 1024;
/// Default passes.
pub const DEFAULT_T: u32 = 3;
/// Default lanes.
pub const DEFAULT_P: u32 = 4;
/// Largest memory we agree to spend: 4 GiB.
pub const MAX_M_KIB: u32 = 4 * 1024 * 1024;
/// Smallest memory we accept for a slot: 8 MiB (tests may go lower with `for_tests`).
pub const MIN_M_KIB: u32 = 8 * 1024;
/// Largest number of passes we agree to run.
pub const MAX_T: u32 = 64;
/// Largest number of lanes.
pub const MAX_P: u32 = 64;

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            m_kib: DEFAULT_M_KIB,
            t: DEFAULT_T,
            p: DEFAULT_P,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests and demos only (1 MiB, 1 pass): never for a real volume.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        }
    }

    /// Checks the parameters against this build's bounds. `allow_weak` admits parameters
    /// below the minimum (slots made for tests); the upper bounds always apply.
    pub fn check(&self, allow_weak: bool) -> Result<(), CryptoError> {
        let err = |why| {
            Err(CryptoError::KdfParamsOutOfBounds {
                m_kib: self.m_kib,
                t: self.t,
                p: self.p,
                why,
            })
        };
        if self.m_kib > MAX_M_KIB {
            return err("memory above 4 GiB");
        }
        if self.t == 0 || self.t > MAX_T {
            return err("passes outside 1..=64");
        }
        if self.p == 0 || self.p > MAX_P {
            return err("lanes outside 1..=64");
        }
        if self.m_kib < 8 * self.p {
            return err("memory below 8 KiB per lane");
        }
        if !allow_weak && self.m_kib < MIN_M_KIB {
            return err("memory below 8 MiB");
        }
        Ok(())
    }

    /// Derives a slot key from `secret` and the slot's salt. Bounds are checked first.
    pub fn derive(&self, secret: &[u8], salt: &[u8]) -> Result<SlotKey, CryptoError> {
        self.check(true)?;
        let params =
            argon2::Params::new(self.m_kib, self.t, self.p, Some(SlotKey::LEN)).map_err(|_| {
                CryptoError::KdfParamsOutOfBounds {
                    m_kib: self.m_kib,
                    t: self.t,
                    p: self.p,
                    why: "rejected by argon2",
                }
            })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; SlotKey::LEN]);
        argon
            .hash_password_into(secret, salt, &mut out[..])
            .map_err(|_| CryptoError::Malformed("argon2 input"))?;
        Ok(SlotKey::from_slice(&out[..]).expect("SlotKey::LEN bytes"))
    }
}

/// HKDF `info` of a key-file slot: domain separation from every other use of the same bytes.
pub const KEYFILE_SLOT_INFO: &[u8] = b"cofferfs/v1/keyfile-slot";
/// Shortest key file accepted: 256 bits, the strength of the KEK it protects.
pub const KEYFILE_MIN_LEN: usize = 32;

/// `slot key = HKDF-SHA256(ikm = key file bytes, salt = slot salt, info = KEYFILE_SLOT_INFO)`,
/// 32 bytes (RFC 5869). The caller must pass the whole key file; it must hold at least
/// [`KEYFILE_MIN_LEN`] bytes of real randomness (`keys new-keyfile` writes 64), since nothing
/// here slows down guessing.
pub fn keyfile_slot_key(keyfile: &[u8], salt: &[u8]) -> Result<SlotKey, CryptoError> {
    if keyfile.len() < KEYFILE_MIN_LEN {
        return Err(CryptoError::Malformed("key file shorter than 32 bytes"));
    }
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), keyfile);
    let mut out = Zeroizing::new([0u8; SlotKey::LEN]);
    hk.expand(KEYFILE_SLOT_INFO, &mut out[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Ok(SlotKey::from_slice(&out[..]).expect("SlotKey::LEN bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_parameters_are_refused_before_hashing() {
        let huge = KdfParams {
            m_kib: u32::MAX,
            t: 3,
            p: 4,
        };
        assert!(matches!(
            huge.derive(b"pw", &[0; 16]),
            Err(CryptoError::KdfParamsOutOfBounds { .. })
        ));
        for bad in [
            KdfParams {
                m_kib: 65536,
                t: 0,
                p: 4,
            },
            KdfParams {
                m_kib: 65536,
                t: 1000,
                p: 4,
            },
            KdfParams {
                m_kib: 65536,
                t: 3,
                p: 0,
            },
            KdfParams {
                m_kib: 65536,
                t: 3,
                p: 255,
            },
            KdfParams {
                m_kib: 16,
                t: 3,
                p: 4,
            },
        ] {
            assert!(bad.check(true).is_err(), "{bad:?}");
        }
        assert!(KdfParams::insecure_for_tests().check(false).is_err());
        assert!(KdfParams::insecure_for_tests().check(true).is_ok());
        assert!(KdfParams::default().check(false).is_ok());
    }

    #[test]
    fn derive_is_deterministic_and_salted() {
        let p = KdfParams::insecure_for_tests();
        let a = p.derive(b"pw", &[1; 16]).unwrap();
        assert_eq!(a.expose(), p.derive(b"pw", &[1; 16]).unwrap().expose());
        assert_ne!(a.expose(), p.derive(b"pw", &[2; 16]).unwrap().expose());
        assert_ne!(a.expose(), p.derive(b"pv", &[1; 16]).unwrap().expose());
    }

    #[test]
    fn keyfile_slot_key_is_salted_and_refuses_short_files() {
        let kf = [7u8; 32];
        let a = keyfile_slot_key(&kf, &[1; 16]).unwrap();
        assert_eq!(
            a.expose(),
            keyfile_slot_key(&kf, &[1; 16]).unwrap().expose()
        );
        assert_ne!(
            a.expose(),
            keyfile_slot_key(&kf, &[2; 16]).unwrap().expose()
        );
        assert_ne!(
            a.expose(),
            keyfile_slot_key(&[8u8; 32], &[1; 16]).unwrap().expose()
        );
        assert!(keyfile_slot_key(&[7u8; 31], &[1; 16]).is_err());
    }

    #[test]
    fn keyfile_slot_key_matches_independent_vector() {
        // Computed with Python's hmac/hashlib (RFC 5869 by hand), also in docs/FORMAT.md.
        let k = keyfile_slot_key(&[0x0b; 32], &[0u8; 16]).unwrap();
        let hex: String = k.expose().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "d6016f170d8a44c69aa30802a87f3042477c69d789514b42f42b105225d86f5c"
        );
    }
}
