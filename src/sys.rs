//! The few process-level system calls that rustix does not wrap safely: `fork`, and blocking
//! and waiting for termination signals. The only module allowed `unsafe`.
#![allow(unsafe_code)]

use std::io;

/// The signals that unmount a running daemon.
const TERMINATION_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only writes into it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in TERMINATION_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it creates
/// afterwards, so that only [`wait_termination_signal`] sees them (fuser installs no handler;
/// an unhandled SIGTERM would leave a dead mount behind).
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits for one of the blocked termination signals and returns its number.
pub fn wait_termination_signal() -> io::Result<i32> {
    let set = termination_set();
    let mut sig = 0;
    // SAFETY: `set` is valid and `sig` is a valid place for the result.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc == 0 {
        Ok(sig)
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// What `fork` returned in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// Forks the process. Call only while the process has a single thread: the child gets a
/// copy of the calling thread alone.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees a single-threaded process, so no lock held by another
    // thread can be copied into the child in a locked state.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Gives SIGPIPE back its default action (end the process), which the Rust runtime sets to
/// "ignore" at start-up. A command whose output goes to `head` or a pager that quits then ends
/// as `ls` or `cat` do, quietly, instead of failing on `EPIPE` with a panic. Not for the mount
/// daemon: it must never die because a reader of its stderr or its parent went away.
pub fn default_sigpipe() {
    // SAFETY: installing SIG_DFL for SIGPIPE runs no code of ours in a signal context; it is
    // called at start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Anonymous pages for key bytes, as `crypto::secure_mem` carves them: mapped private,
/// excluded from core dumps (`MADV_DONTDUMP`), and locked in RAM (`mlock`) when
/// `RLIMIT_MEMLOCK` allows, so they are neither swapped out nor written into a dump. The
/// pages are never unmapped: they are handed out as a `'static` slice. Returns the pages and
/// whether the lock took (an unprivileged user's limit may be as low as 64 KiB).
pub fn map_secret_pages(len: usize) -> io::Result<(&'static mut [u8], bool)> {
    // SAFETY: an anonymous private mapping of `len` bytes at an address the kernel chooses
    // aliases nothing; the result is checked against MAP_FAILED before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ptr..ptr+len` is the mapping just made; advice and locking do not change its
    // contents or validity.
    let locked = unsafe {
        if libc::madvise(ptr, len, libc::MADV_DONTDUMP) != 0 {
            log::warn!(
                "MADV_DONTDUMP refused on key memory: {}",
                io::Error::last_os_error()
            );
        }
        libc::mlock(ptr, len) == 0
    };
    // SAFETY: the mapping is `len` readable and writable bytes (zero-filled by the kernel),
    // never unmapped, and this slice is the only reference to it.
    let pages = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
    Ok((pages, locked))
}

/// Reads the whole of `file` (a key file, an identity, a token) into one buffer sized up
/// front — the file's size, or `max + 1` bytes for a pipe — and wiped on drop, never a
/// growing `Vec` whose reallocations would leave copies of the secret in freed memory. Reads
/// at most `max + 1` bytes, so a caller can tell a file larger than `max` by its length.
pub fn read_secret(file: &mut std::fs::File, max: u64) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let meta = file.metadata()?;
    let cap = if meta.is_file() {
        meta.len().min(max) + 1
    } else {
        max + 1
    };
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; cap as usize]);
    let mut len = 0;
    while len < bytes.len() {
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // Shrinking keeps the allocation: nothing is copied, and the whole of it is wiped on drop.
    bytes.truncate(len);
    Ok(bytes)
}
