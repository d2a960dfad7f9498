//! Secret key newtypes. Each owns its bytes in a slot of the key arena (`secure_mem`: out of
//! core dumps, locked in RAM where allowed; moves never leave copies behind), wipes them on
//! drop, has no `Clone`, and prints as `Name(..)` so no `Debug` or log line can ever carry key
//! bytes.

use zeroize::ZeroizeOnDrop;

use super::secure_mem::{SLOT_LEN, SecretSlot};
use super::{CryptoError, os_random};

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        pub struct $name(SecretSlot);

        const _: () = assert!($len <= SLOT_LEN);

        impl $name {
            /// Length of the key in bytes.
            pub const LEN: usize = $len;

            /// A new key from the OS CSPRNG.
            pub fn generate() -> Result<Self, CryptoError> {
                let mut k = SecretSlot::new();
                os_random(&mut k.bytes_mut()[..$len])?;
                Ok($name(k))
            }

            /// Copies key bytes out of a buffer (the caller zeroizes its own copy, e.g. by
            /// holding it in `Zeroizing`). `None` when the length is wrong.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                if bytes.len() != $len {
                    return None;
                }
                let mut k = SecretSlot::new();
                k.bytes_mut()[..$len].copy_from_slice(bytes);
                Some($name(k))
            }

            /// The raw bytes, for the cipher that uses them and nothing else.
            pub fn expose(&self) -> &[u8; $len] {
                <&[u8; $len]>::try_from(&self.0.bytes()[..$len]).expect("the slot holds LEN")
            }
        }

        // The slot wipes itself when dropped.

        impl ZeroizeOnDrop for $name {}

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

secret_key!(
    /// Key Encryption Key: random, one per volume generation, never derived from a password
    /// and never on disk in clear. Wraps every FEK and the name key.
    Kek,
    32
);
secret_key!(
    /// File Encryption Key: random, one per file (per inode), seals the file's chunks.
    Fek,
    32
);
secret_key!(
    /// Name key: random, wrapped by the KEK (so a rotation renames nothing); AES-SIV-CMAC-256
    /// takes a 512-bit key.
    NameKey,
    64
);
secret_key!(
    /// Slot key: derived from one slot's secret (Argon2id of a password, or a key file); wraps
    /// the KEK in that slot.
    SlotKey,
    32
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_key_bytes() {
        let k = Kek::from_slice(&[0xab; 32]).unwrap();
        let n = NameKey::from_slice(&[0xab; 64]).unwrap();
        for s in [
            format!("{k:?}"),
            format!("{n:?}"),
            format!("{:?}", Fek::generate().unwrap()),
        ] {
            assert!(!s.to_lowercase().contains("ab"), "{s}");
            assert!(s.ends_with("(..)"), "{s}");
        }
    }

    #[test]
    fn generated_keys_differ_and_lengths_are_checked() {
        assert_ne!(
            Fek::generate().unwrap().expose(),
            Fek::generate().unwrap().expose()
        );
        assert!(Fek::from_slice(&[0; 31]).is_none());
        assert!(NameKey::from_slice(&[0; 32]).is_none());
    }
}
