//! A close(2) of a handle that cannot write costs no round trip when the mount runs without
//! the writeback cache (`--no-writeback-cache`, `--ro`): the daemon opens such handles with
//! `FOPEN_NOFLUSH`, so the kernel sends no FLUSH (issue 16: reading a tree of small files
//! paid one request per file for it). A handle that writes is still flushed at close, so a
//! failed write still shows there.
//!
//! The proof is behavioural: with the daemon stopped (SIGSTOP), a close that sends a FLUSH
//! cannot return until the daemon runs again; one that sends none returns at once.

mod common;

use std::fs::File;
use std::io::Read;
use std::time::Duration;

use common::mount::Mounted;
use common::stopped::returns_while_stopped;

/// Opens `name` read-only and reads it whole (the daemon must answer these), then stops the
/// daemon and closes the handle: close(2) must return while the daemon is stopped.
fn read_only_close_returns_with_the_daemon_stopped(m: &Mounted, name: &str, want: &[u8]) {
    let mut f = File::open(m.path(name)).unwrap();
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert_eq!(got, want);
    returns_while_stopped(m, Duration::from_secs(5), move || common::close(f))
        .expect("close(2) of a read-only handle waited for the stopped daemon (a FLUSH was sent)")
        .expect("close(2) of a read-only handle failed");
}

#[test]
fn a_read_only_handle_closes_without_the_daemon_when_there_is_no_writeback_cache() {
    let mut m = Mounted::with(&[], &["--no-writeback-cache"]);
    std::fs::write(m.path("f"), b"small file").unwrap();
    read_only_close_returns_with_the_daemon_stopped(&m, "f", b"small file");
    // The daemon runs on, and the file reads back the same.
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"small file");

    // A read-only mount: every handle is read-only and none is flushed.
    m.unmount();
    m.mount(&["--ro"]);
    read_only_close_returns_with_the_daemon_stopped(&m, "f", b"small file");
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"small file");
}

#[test]
fn a_handle_that_writes_is_still_flushed_at_close() {
    let m = Mounted::with(&[], &["--no-writeback-cache"]);
    std::fs::write(m.path("f"), b"before").unwrap();
    for opts in [
        std::fs::OpenOptions::new().write(true).clone(),
        std::fs::OpenOptions::new().read(true).write(true).clone(),
    ] {
        let f = opts.open(m.path("f")).unwrap();
        let Err(closed) =
            returns_while_stopped(&m, Duration::from_millis(500), move || common::close(f))
        else {
            panic!("close(2) of a writing handle returned without asking the daemon (no FLUSH)");
        };
        closed
            .recv_timeout(Duration::from_secs(30))
            .expect("close(2) returns once the daemon runs again")
            .expect("close(2) of a writing handle failed");
    }
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"before");
}
