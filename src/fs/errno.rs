//! The one place where a volume error becomes an errno. One explicit arm per variant, no
//! catch-all, so a new variant must get its errno chosen before the code compiles.
//! Corruption becomes EIO plus a warning naming the file and chunk; I/O errors pass through.

use fuser::Errno;

use crate::keystore::KeystoreError;
use crate::volume::VolumeError;

/// The errno for `e`, logging corruption (never any secret: ids and indices only).
pub fn errno(e: &VolumeError) -> Errno {
    match e {
        VolumeError::CorruptChunk { .. }
        | VolumeError::CorruptFile { .. }
        | VolumeError::CorruptName(_) => {
            log::warn!("{e}");
            Errno::EIO
        }
        VolumeError::NotACipherdir(_) | VolumeError::Format(_) => {
            log::warn!("{e}");
            Errno::EIO
        }
        // Raised only while a volume is being opened, never through the mount.
        VolumeError::StoreElsewhere(_)
        | VolumeError::StoreMismatch { .. }
        | VolumeError::StoreInside(_)
        | VolumeError::StorePath { .. }
        | VolumeError::StoreMissing(_)
        | VolumeError::ControlFile { .. }
        | VolumeError::BadMarker { .. } => {
            log::error!("{e}");
            Errno::EIO
        }
        VolumeError::NotEmpty(_) => Errno::ENOTEMPTY,
        VolumeError::Locked(_) => Errno::EBUSY,
        VolumeError::Io(io) => Errno::from_i32(io.raw_os_error().unwrap_or(libc::EIO)),
        VolumeError::Keystore(k) => keystore_errno(k),
    }
}

fn keystore_errno(k: &KeystoreError) -> Errno {
    if let Some(code) = k.raw_os_error() {
        return Errno::from_i32(code);
    }
    match k {
        KeystoreError::MissingKey(_)
        | KeystoreError::TamperedKey(_)
        | KeystoreError::KeyRowGeneration { .. } => {
            log::warn!("{k}");
            Errno::EIO
        }
        // Slot management and rotation never run through a file operation; listed so a new variant is a choice.
        KeystoreError::NoSuchSlot(_)
        | KeystoreError::LastSlot(_)
        | KeystoreError::OtherSlots(_)
        | KeystoreError::TooManySlots(_)
        | KeystoreError::NoSlotKept
        | KeystoreError::RotationPending { .. }
        | KeystoreError::RotationNeedsV3 => {
            log::error!("{k}");
            Errno::EINVAL
        }
        KeystoreError::Missing(_)
        | KeystoreError::ParamsDoNotVerify(_)
        | KeystoreError::Corrupt(_)
        | KeystoreError::NewerVersion { .. }
        | KeystoreError::WalUnreadable(_)
        | KeystoreError::WrongPassword
        | KeystoreError::Crypto(_)
        | KeystoreError::Sqlite(_)
        | KeystoreError::Io(_) => {
            log::error!("header store: {k}");
            Errno::EIO
        }
    }
}

/// An errno as a volume error, for handlers that fail before touching the volume.
pub fn os(code: i32) -> VolumeError {
    VolumeError::Io(std::io::Error::from_raw_os_error(code))
}
