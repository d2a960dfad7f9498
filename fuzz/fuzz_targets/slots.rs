//! Key slots and key rows read from an untrusted header store (`crypto::kdf`, `crypto::wrap`,
//! `keystore::SlotKind`), the pure parts only: the Argon2id parameter bounds, the slot kind
//! column, a Transit or PKCS#11 slot's `params` JSON, the key-file KDF, and unwrapping a slot's KEK, a
//! FEK row and the name key under fixed keys. Input: m, t, p (3 × 4 bytes), a selector byte, a 16-byte context (volume or file
//! id), then the column bytes. Nothing may panic; parameters the bounds accept must be ones
//! Argon2 accepts (and none above the caps is hashed); a wrapped key that unwraps must be
//! exactly the wrap of its key with its own nonce.
#![no_main]

use cofferfs::crypto::kdf::{self, KdfParams};
use cofferfs::crypto::wrap::{self, FEK_LABEL, KEK_LABEL, NAME_KEY_LABEL, WRAP_OVERHEAD_LEN};
use cofferfs::keystore::{Pkcs11Params, SlotKind, TransitParams};
use libfuzzer_sys::fuzz_target;

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 29 {
        return;
    }
    let p = KdfParams {
        m_kib: u32_at(data, 0),
        t: u32_at(data, 4),
        p: u32_at(data, 8),
    };
    let (weak_ok, strict_ok) = (p.check(true).is_ok(), p.check(false).is_ok());
    assert!(!strict_ok || weak_ok);
    if weak_ok {
        assert!(p.m_kib <= kdf::MAX_M_KIB && p.t <= kdf::MAX_T && p.p <= kdf::MAX_P);
        argon2::Params::new(p.m_kib, p.t, p.p, Some(32)).expect("in bounds is valid for Argon2");
    }

    let selector = data[12];
    let context = &data[13..29];
    let column = &data[29..];
    if let Ok(s) = std::str::from_utf8(column)
        && let Some(kind) = SlotKind::parse(s)
    {
        assert_eq!(kind.to_string(), s);
    }
    // A Transit slot's `params`: what decodes must encode back to something that decodes to
    // the same, and name a key version.
    if let Ok(s) = std::str::from_utf8(column)
        && let Ok(tp) = TransitParams::decode(s)
    {
        assert!(tp.key_version().is_some());
        assert_eq!(TransitParams::decode(&tp.encode()).as_ref(), Ok(&tp));
    }
    // A PKCS#11 slot's `params`: the same round trip, and a blob of the one size.
    if let Ok(s) = std::str::from_utf8(column)
        && let Ok(pp) = Pkcs11Params::decode(s)
    {
        assert!(pp.blob_bytes().is_some());
        assert_eq!(Pkcs11Params::decode(&pp.encode()).as_ref(), Ok(&pp));
    }
    let _ = kdf::keyfile_slot_key(column, context);

    let label = match selector % 3 {
        0 => KEK_LABEL,
        1 => FEK_LABEL,
        _ => NAME_KEY_LABEL,
    };
    let key = [selector; 32];
    let aad = [label, context].concat();
    if let Ok(bytes) = wrap::unwrap(&key, column, &aad) {
        assert!(column.len() >= WRAP_OVERHEAD_LEN);
        let nonce = column[..12].try_into().expect("12 bytes");
        assert_eq!(
            wrap::wrap_with_nonce(&key, &nonce, &bytes, &aad),
            column,
            "forged key"
        );
    }
    let wrapped = wrap::wrap_with_nonce(&key, &[selector; 12], column, &aad);
    assert_eq!(
        &wrap::unwrap(&key, &wrapped, &aad).expect("own wrap")[..],
        column
    );
    let mut other = aad.clone();
    other[0] ^= 1;
    assert!(
        wrap::unwrap(&key, &wrapped, &other).is_err(),
        "unwrapped under another label"
    );
});
