//! A mount's daemon stopped with SIGSTOP, to prove which system calls need no round trip: with
//! the daemon stopped, a call that sends a request cannot return until it runs again; one the
//! kernel answers itself returns at once.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::mount::Mounted;

/// Sends SIGCONT to the daemon when dropped, so a failed assertion never leaves it stopped
/// (and the mount hung for the next test).
pub struct Stopped(u32);

impl Stopped {
    pub fn daemon_of(m: &Mounted) -> Self {
        let pid = m.daemon_pid().expect("mounted");
        signal(pid, libc::SIGSTOP);
        let stopped = Stopped(pid);
        // kill(2) only queues the signal: wait until every thread of the daemon is stopped,
        // or a request sent now could still be answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        stopped
    }
}

/// Whether every thread of `pid` is in state `T` (stopped by a signal).
fn all_threads_stopped(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks.into_iter().all(|t| {
        let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
        // The state follows the command name's closing parenthesis.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // No assertion here: a second panic while a failed test unwinds would abort the
        // binary before the mounts of the other tests are cleaned up.
        // SAFETY: kill(2) with a pid this test spawned; no memory is shared.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) };
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid this test spawned; no memory is shared.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `call` on another thread with the daemon of `m` stopped: `Ok` with its result if it
/// returned within `wait` (the kernel answered it alone), else `Err` with the receiver of the
/// result, which arrives once the daemon runs again (it does when this returns).
pub fn returns_while_stopped<T: Send + 'static>(
    m: &Mounted,
    wait: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, mpsc::Receiver<T>> {
    let stopped = Stopped::daemon_of(m);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    let got = rx.recv_timeout(wait);
    drop(stopped);
    got.map_err(|_| rx)
}
