//! The PKCS#11 layer (src/pkcs11) against a real SoftHSM2 token: key made on the token and
//! never extractable, seal/open round trip bound to its associated data, and each refusal
//! (wrong PIN, token absent, key missing, module not loadable) sorted into its case.
//!
//! One test function: SoftHSM2 reads `SOFTHSM2_CONF` from the environment of this process,
//! which is set once, before any thread could read it.

mod common;

use std::path::Path;

use cofferfs::pkcs11::{Pkcs11Error, Token};
use common::softhsm::{MODULE, SoftHsm};
use zeroize::Zeroizing;

fn pin(s: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(s.as_bytes().to_vec())
}

fn make_extractable_key(module: &Path, token: &str, user_pin: &str, label: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    use cryptoki::session::UserType;
    let ctx = Pkcs11::new(module).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == token)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    // Logged in already when the caller's session is (login state is per application).
    let _ = session.login(UserType::User, Some(&user_pin.to_owned().into()));
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::ValueLen(32.into()),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .unwrap();
}

#[test]
fn token_seal_open_and_refusals() {
    let hsm = SoftHsm::new();
    // SAFETY: the only test of this binary, run before any other thread exists that reads
    // the environment (the module reads it in C_Initialize, below).
    unsafe { std::env::set_var("SOFTHSM2_CONF", hsm.conf()) };
    let serial = hsm.init_token("t1", "1234");
    let module = Path::new(MODULE);

    let token = Token::open(module, "t1", Some(&serial)).unwrap();
    assert_eq!(token.serial(), serial);
    let s = token.login(pin("1234"), true).unwrap();
    let (key, made) = s.find_or_create_key("k").unwrap();
    assert!(made);
    // Found again, it passes the check that it is sensitive and not extractable.
    let (again, made) = s.find_or_create_key("k").unwrap();
    assert!(!made);
    assert_eq!(again, key);
    let secret = [7u8; 32];
    let blob = s.seal(key, &secret, b"aad").unwrap();
    assert_eq!(blob.len(), 12 + 32 + 16);
    assert_eq!(&s.open(&[key], &blob, b"aad", "k").unwrap()[..], &secret);
    let r = s.open(&[key], &blob, b"other", "k");
    assert!(
        matches!(r, Err(Pkcs11Error::Undecryptable { .. })),
        "{:?}",
        r.map(|_| ())
    );
    let mut flipped = blob.clone();
    flipped[20] ^= 1;
    assert!(matches!(
        s.open(&[key], &flipped, b"aad", "k"),
        Err(Pkcs11Error::Undecryptable { .. })
    ));
    assert!(matches!(
        s.find_key("nope"),
        Err(Pkcs11Error::KeyMissing { .. })
    ));
    // A key that could leave the token (made here extractable, through cryptoki itself) is
    // refused rather than used.
    make_extractable_key(module, "t1", "1234", "weak");
    let r = s.find_or_create_key("weak").map(|_| ());
    assert!(
        matches!(&r, Err(Pkcs11Error::Other(m)) if m.contains("extractable")),
        "{r:?}"
    );
    drop(s);
    drop(token);

    // SoftHSM2 never locks a user PIN: twenty wrong tries are each "wrong PIN", and the
    // right one still works after them.
    let token = Token::open(module, "t1", None).unwrap();
    for _ in 0..20 {
        let r = token.login(pin("0000"), false).map(|_| ());
        assert!(matches!(r, Err(Pkcs11Error::WrongPin(_))), "{r:?}");
    }
    token.login(pin("1234"), false).unwrap();
    drop(token);
    // A token that reports its user PIN locked (as real ones do after their retry limit) is
    // not asked at all, even with the right PIN.
    hsm.lock_user_pin("t1");
    let token = Token::open(module, "t1", None).unwrap();
    let r = token.login(pin("1234"), false).map(|_| ());
    assert!(matches!(r, Err(Pkcs11Error::PinLocked(_))), "{r:?}");
    drop(token);

    assert!(matches!(
        Token::open(module, "absent", None),
        Err(Pkcs11Error::TokenAbsent { .. })
    ));
    assert!(matches!(
        Token::open(module, "t1", Some("0000000000000000")),
        Err(Pkcs11Error::TokenAbsent { .. })
    ));
    assert!(matches!(
        Token::open(Path::new("/nonexistent/libnope.so"), "t1", None),
        Err(Pkcs11Error::Module { .. })
    ));
    assert!(matches!(
        Token::open(Path::new("relative.so"), "t1", None),
        Err(Pkcs11Error::Module { .. })
    ));
    // A library that is no PKCS#11 module.
    assert!(matches!(
        Token::open(Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1"), "t1", None),
        Err(Pkcs11Error::Module { .. })
    ));
}
