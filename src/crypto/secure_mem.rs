//! Where key bytes live (keys, and the expanded key schedules of long-lived ciphers):
//! fixed-size slots carved from pages that are excluded from core dumps
//! (`MADV_DONTDUMP`) and, when `RLIMIT_MEMLOCK` allows, locked in RAM (`mlock`), so a key is
//! neither swapped to disk nor written into a crash dump. One arena for every key of the
//! process rather than one `mlock` per key: a page per key would cost 4 KiB for 32 bytes and
//! the FEK cache alone (4096 keys) would pass an ordinary user's 8 MiB lock limit, while
//! 64-byte slots fit the whole cache in 256 KiB. Best effort: when the pages cannot be locked
//! (a low limit) they are still kept out of dumps; a key is never refused for want of locked
//! memory (failing to map pages at all is running out of memory).
//!
//! The arena only grows (pages are never unmapped; a freed slot is wiped and reused), so its
//! size is the peak number of live keys. The mapping itself is the one `unsafe` call, in
//! `crate::sys`; carving and reuse here are safe Rust.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use zeroize::Zeroize;

/// Bytes of one key slot: the largest key (the 512-bit name key).
pub const SLOT_LEN: usize = 64;
/// Bytes of one cipher-state slot: room for an expanded key schedule (ring's AES-256-GCM key,
/// which holds the raw key in its first round keys, with its GHASH table).
pub const STATE_LEN: usize = 1024;
/// Alignment of a cipher-state slot (slots are carved from page-aligned chunks).
pub const STATE_ALIGN: usize = 1024;
/// Bytes mapped at a time for each pool.
pub const CHUNK_LEN: usize = 64 * 1024;

/// Bytes of key memory mapped so far, and how many of them are locked.
static MAPPED: AtomicUsize = AtomicUsize::new(0);
static LOCKED: AtomicUsize = AtomicUsize::new(0);

/// How much key memory the process has, and how much of it is locked in RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaStats {
    /// Bytes mapped for keys (all excluded from core dumps).
    pub mapped: usize,
    /// Bytes of those locked in RAM.
    pub locked: usize,
}

/// The arena's size now.
pub fn stats() -> ArenaStats {
    ArenaStats {
        mapped: MAPPED.load(Ordering::Relaxed),
        locked: LOCKED.load(Ordering::Relaxed),
    }
}

/// Maps one chunk of secret pages. Failing to map them is running out of memory, handled as
/// the global allocator would handle it.
fn map_chunk() -> &'static mut [u8] {
    match crate::sys::map_secret_pages(CHUNK_LEN) {
        Ok((pages, locked)) => {
            let before = MAPPED.fetch_add(CHUNK_LEN, Ordering::Relaxed);
            if locked {
                LOCKED.fetch_add(CHUNK_LEN, Ordering::Relaxed);
            } else if before == 0 {
                log::info!(
                    "key memory not locked in RAM (RLIMIT_MEMLOCK too low); still kept out of core dumps"
                );
            }
            pages
        }
        Err(e) => {
            log::error!("cannot map memory for keys: {e}");
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(CHUNK_LEN, 4096).expect("valid layout"),
            )
        }
    }
}

/// Wiped cells of `N` bytes ready for reuse, carved from mapped chunks.
struct Pool<const N: usize> {
    free: Mutex<Vec<&'static mut [u8; N]>>,
}

impl<const N: usize> Pool<N> {
    const fn new() -> Self {
        Pool {
            free: parking_lot::const_mutex(Vec::new()),
        }
    }

    fn take(&self) -> &'static mut [u8; N] {
        let mut free = self.free.lock();
        if free.is_empty() {
            free.extend(
                map_chunk()
                    .chunks_exact_mut(N)
                    .map(|c| <&mut [u8; N]>::try_from(c).expect("chunks of N bytes")),
            );
        }
        free.pop().expect("a chunk was just added")
    }

    fn give(&self, cell: &'static mut [u8; N]) {
        cell.zeroize();
        self.free.lock().push(cell);
    }
}

static KEYS: Pool<SLOT_LEN> = Pool::new();
static STATES: Pool<STATE_LEN> = Pool::new();

macro_rules! secret_cell {
    ($(#[$doc:meta])* $name:ident, $len:expr, $pool:expr) => {
        $(#[$doc])*
        pub struct $name(Option<&'static mut [u8; $len]>);

        impl $name {
            /// A zero-filled slot.
            pub fn new() -> Self {
                $name(Some($pool.take()))
            }

            /// The slot's bytes.
            pub fn bytes(&self) -> &[u8; $len] {
                self.0.as_deref().expect("present until drop")
            }

            /// The slot's bytes, to fill in.
            pub fn bytes_mut(&mut self) -> &mut [u8; $len] {
                self.0.as_deref_mut().expect("present until drop")
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                if let Some(cell) = self.0.take() {
                    $pool.give(cell);
                }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

secret_cell!(
    /// One zero-filled slot of key memory ([`SLOT_LEN`] bytes), wiped and returned to the
    /// arena when dropped. Not `Clone`: the bytes exist once.
    SecretSlot,
    SLOT_LEN,
    KEYS
);
secret_cell!(
    /// One zero-filled, [`STATE_ALIGN`]-aligned slot of [`STATE_LEN`] bytes for a cipher's
    /// expanded key, wiped and returned to the arena when dropped.
    SecretState,
    STATE_LEN,
    STATES
);

/// Bytes of stack [`wipe_stack_below`] overwrites: more than the key setup of ring's
/// AES-GCM or RustCrypto's AES-SIV uses.
pub const STACK_WIPE_LEN: usize = 16 * 1024;

/// Overwrites the stack just below the caller's frame with zeros: the frames of functions the
/// caller has called and that have returned, where a cipher library leaves copies of the key
/// schedules it built by value (a worker thread's stack is never freed, so they would stay
/// until overwritten by chance). Call it right after such a call, from the function that made
/// it. `inline(never)` so the scratch array really is a frame below the caller's;
/// `black_box` makes the compiler write it (one memset, far cheaper than `zeroize`'s volatile
/// stores one word at a time).
#[inline(never)]
pub fn wipe_stack_below() {
    let scratch = [0u64; STACK_WIPE_LEN / 8];
    std::hint::black_box(&scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_zeroed_wiped_and_reused() {
        // Whether the pages are kept out of dumps and locked is checked on the real daemon,
        // from its /proc/PID/smaps (tests/secrets.rs).
        let mut a = SecretSlot::new();
        assert_eq!(a.bytes(), &[0u8; SLOT_LEN]);
        a.bytes_mut().fill(0xa5);
        drop(a);
        // Slots are reused last-in first-out: the same cell, wiped. (Other tests running at
        // the same time may take it first; then any slot we get must still be zero.)
        let b = SecretSlot::new();
        assert_eq!(b.bytes(), &[0u8; SLOT_LEN]);
        assert!(stats().mapped >= CHUNK_LEN);

        let mut st = SecretState::new();
        assert_eq!(st.bytes().as_ptr() as usize % STATE_ALIGN, 0);
        st.bytes_mut().fill(1);
        drop(st);
        assert_eq!(SecretState::new().bytes(), &[0u8; STATE_LEN]);
    }

    #[test]
    fn the_arena_grows_past_one_chunk() {
        let many: Vec<SecretSlot> = (0..CHUNK_LEN / SLOT_LEN + 1)
            .map(|_| SecretSlot::new())
            .collect();
        let mut addrs: Vec<usize> = many.iter().map(|s| s.bytes().as_ptr() as usize).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), many.len());
        assert!(stats().mapped >= 2 * CHUNK_LEN);
    }
}
