//! `kill -9` of a command at random points: one full run gives the time scale, then each run
//! is killed after a delay drawn over the whole of it (start-up and the last commit included).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// A seed from the clock (odd, so a xorshift never starts at 0); print it in failure messages.
pub fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

/// Runs `spawn()` to its end, which must be a success; returns how long it took.
pub fn full_run(spawn: &dyn Fn() -> Child) -> Duration {
    let started = Instant::now();
    assert!(
        spawn().wait().unwrap().success(),
        "the uninterrupted run failed"
    );
    started.elapsed()
}

/// A delay in `0..1.1 × full` from the random `r`.
pub fn random_delay(full: Duration, r: u64) -> Duration {
    full.mul_f64((r % 1000) as f64 / 1000.0 * 1.1)
}

/// Starts `spawn()`, sends it SIGKILL after `delay` and returns how it ended (a success when it
/// was done before).
pub fn kill_after(spawn: &dyn Fn() -> Child, delay: Duration) -> ExitStatus {
    let mut child = spawn();
    std::thread::sleep(delay);
    let _ = child.kill();
    child.wait().unwrap()
}
