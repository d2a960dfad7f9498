//! ring's AES-256-GCM key kept in wiped memory: the one key type behind the content cipher
//! (`chunk.rs`) and the prepared wrapping keys (`wrap.rs`), each built once and used for many
//! seals and opens.

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};

use super::secure_mem::{STATE_ALIGN, STATE_LEN, SecretState, wipe_stack_below};

/// ring's AES-256-GCM key (expanded key schedule and GHASH table, held inline; the first
/// round keys are the key itself) in a slot of the key arena (`secure_mem`: out of core dumps,
/// locked in RAM where allowed), wiped when dropped: ring does not wipe its keys. The key is
/// written into the slot in place and never moved, so moves of the cipher never copy the
/// schedule; the copies ring makes on the stack while it builds the schedule are overwritten
/// right after ([`wipe_stack_below`]).
pub(super) struct SecretKey(SecretState);

// The wipe skips ring's drop: sound only while the key has no drop glue (owns no heap data).
const _: () = assert!(!std::mem::needs_drop::<LessSafeKey>());
const _: () = assert!(std::mem::size_of::<LessSafeKey>() <= STATE_LEN);
const _: () = assert!(std::mem::align_of::<LessSafeKey>() <= STATE_ALIGN);

impl SecretKey {
    /// The schedule of AES-256 key `key`, built in a fresh slot; the stack below is wiped.
    pub(super) fn new(key: &[u8; 32]) -> Self {
        let mut slot = SecretState::new();
        Self::build_into(key, &mut slot);
        // ring built the schedule in stack frames below this one, where it would stay until
        // overwritten (a worker's stack is never freed): overwrite them now.
        wipe_stack_below();
        SecretKey(slot)
    }

    // One of the unsafe blocks outside `sys.rs`, all for keeping ring's key in wiped memory.
    #[allow(unsafe_code)]
    #[inline(never)]
    fn build_into(key: &[u8; 32], slot: &mut SecretState) {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key");
        let at = slot.bytes_mut().as_mut_ptr().cast::<LessSafeKey>();
        // SAFETY: the slot is STATE_LEN bytes aligned to STATE_ALIGN, enough for a
        // LessSafeKey (checked at compile time above), and only this value will live in it.
        unsafe { at.write(LessSafeKey::new(unbound)) };
    }
}

impl std::ops::Deref for SecretKey {
    type Target = LessSafeKey;
    #[allow(unsafe_code)]
    fn deref(&self) -> &LessSafeKey {
        // SAFETY: `new` wrote a LessSafeKey at the start of the slot, and only the slot's drop
        // (after every borrow of `self`) wipes it.
        unsafe { &*self.0.bytes().as_ptr().cast::<LessSafeKey>() }
    }
}

// Dropping the slot wipes it (the key needs no drop of its own, checked above).
