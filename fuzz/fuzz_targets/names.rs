//! Names read from an untrusted cipherdir (`format::names`, `crypto::names`): the base64url
//! decoding of on-disk names, the long-name form `cofferfs.long.<digest>`, the reserved-name
//! rules, and AES-SIV decryption of entry names, symlink targets and extended attribute names
//! and values under a fixed name key.
//! Input: a 16-byte directory id, then the on-disk name. Nothing may panic; a name that
//! decodes must be the canonical encoding of its bytes, a long name must be the one its digest
//! gives, and a name or target that decrypts must be exactly what encrypting its plaintext
//! gives (deterministic AEAD: anything else is a forgery).
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use cofferfs::crypto::NameKey;
use cofferfs::crypto::names::{NameCipher, XATTR_NAME_LABEL, XATTR_VALUE_LABEL};
use cofferfs::format::names::{self as fnames, DIR_ID_LEN};
use cofferfs::volume::walk::long_name_digest;
use libfuzzer_sys::fuzz_target;

fn cipher() -> NameCipher {
    let key: Vec<u8> = (0u8..64).collect();
    NameCipher::new(NameKey::from_slice(&key).expect("64 bytes"))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < DIR_ID_LEN {
        return;
    }
    let (dir_id, disk) = data.split_at(DIR_ID_LEN);
    for in_root in [false, true] {
        let _ = fnames::is_reserved(disk, in_root);
    }
    let _ = fnames::is_temp_name(disk);
    if let Some(d) = long_name_digest(OsStr::from_bytes(disk)) {
        assert_eq!(fnames::long_name(&d).as_bytes(), disk);
    }
    let c = cipher();
    let Ok(text) = std::str::from_utf8(disk) else {
        return;
    };
    let Ok(enc) = fnames::decode(text) else {
        return;
    };
    assert_eq!(fnames::encode(&enc), text, "not the canonical encoding");
    if let Ok(plain) = c.decrypt_name(dir_id, &enc) {
        assert_eq!(c.encrypt_name(dir_id, &plain), enc, "forged name");
    }
    if let Ok(target) = c.decrypt_symlink(&enc) {
        assert_eq!(c.encrypt_symlink(&target), enc, "forged symlink target");
    }
    // Extended attributes: the name (base64url on disk), and a value (raw bytes on disk)
    // bound to its attribute name, here the directory id bytes.
    if let Ok(name) = c.open(&[XATTR_NAME_LABEL], &enc) {
        assert_eq!(c.seal(&[XATTR_NAME_LABEL], &name), enc, "forged xattr name");
    }
    if let Ok(value) = c.open(&[XATTR_VALUE_LABEL, dir_id], disk) {
        assert_eq!(
            c.seal(&[XATTR_VALUE_LABEL, dir_id], &value),
            disk,
            "forged xattr value"
        );
    }
    // The decoded bytes as a plaintext name: a round trip bound to this directory only.
    let sealed = c.encrypt_name(dir_id, &enc);
    let back = fnames::decode(&fnames::encode(&sealed)).expect("own encoding");
    assert_eq!(c.decrypt_name(dir_id, &back).expect("own name"), enc);
    let mut other = dir_id.to_vec();
    other[0] ^= 1;
    assert!(
        c.decrypt_name(&other, &back).is_err(),
        "name opened in another directory"
    );
});
