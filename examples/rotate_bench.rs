//! Benchmark helper for `scripts/bench-rotate.sh`: rotates the KEK of a volume in this process
//! while a writer thread creates key rows through the same keyring (what a create through the
//! mount does first), and reports the rotation's total time, its longest single transaction
//! and the writer's wait per create.
//!
//! Usage: rotate_bench CIPHERDIR PASSWORD at-once|incremental [BATCH_ROWS]
//! - `at-once`: every row in ONE transaction (`HeaderStore::rotate_at_once`, the rotation of
//!   schema 1 stores, and of every store before incremental rotation);
//! - `incremental`: `Keyring::begin_rotation` then `rotation_step(BATCH_ROWS)` to the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cofferfs::crypto::Kek;
use cofferfs::volume::Volume;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, pw, mode) = match &args[1..] {
        [d, p, m] | [d, p, m, _] => (d, p, m.as_str()),
        _ => {
            eprintln!("usage: rotate_bench CIPHERDIR PASSWORD at-once|incremental [BATCH_ROWS]");
            std::process::exit(2);
        }
    };
    let batch: usize = args
        .get(4)
        .map_or(cofferfs::keystore::keyring::DEFAULT_BATCH_ROWS, |b| {
            b.parse().expect("BATCH_ROWS is a number")
        });
    let vol = Arc::new(Volume::open(dir.as_ref(), pw.as_bytes(), None).expect("volume opens"));
    let rows = vol.keyring().store().file_count().expect("count");
    let new_kek = Kek::generate().expect("random");
    let keep = vol.slot_id();
    let kept = vec![
        vol.keyring()
            .rebuilt_slot(keep, pw.as_bytes(), &new_kek)
            .expect("slot rebuilt"),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (vol, stop) = (vol.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                vol.keyring().new_file_key(None).expect("row created");
                waits.push(t.elapsed());
                // About 200 creates a second: a busy writer, not a flood.
                std::thread::sleep(Duration::from_millis(5));
            }
            waits
        })
    };
    std::thread::sleep(Duration::from_millis(50));

    let started = Instant::now();
    let mut longest = Duration::ZERO;
    let mut transactions = 0u64;
    // (duration, index, rows re-wrapped) of every step, to show where the slowest ones fall.
    let mut slowest: Vec<(Duration, u64, u64)> = Vec::new();
    match mode {
        "at-once" => {
            let keks = vol.keyring().kek_for_tests();
            let store = vol.keyring().store();
            let params = store.params().expect("params");
            let nk = params.unwrap_name_key(&keks).expect("name key");
            let wnk = params.wrap_name_key(&new_kek, &nk).expect("wrap");
            store
                .rotate_at_once(&keks, &new_kek, &wnk, &kept, &[], &mut |_, _| {})
                .expect("rotated");
            longest = started.elapsed();
            transactions = 1;
        }
        "incremental" => {
            let t = Instant::now();
            vol.keyring()
                .begin_rotation(new_kek, kept, false)
                .expect("begun");
            longest = longest.max(t.elapsed());
            transactions += 1;
            loop {
                let t = Instant::now();
                let p = vol.keyring().rotation_step(batch).expect("step");
                let took = t.elapsed();
                longest = longest.max(took);
                slowest.push((took, transactions, p.rewrapped));
                transactions += 1;
                if p.finished {
                    break;
                }
            }
        }
        other => panic!("unknown mode {other}"),
    }
    let total = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut waits = writer.join().expect("writer");
    waits.sort();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{mode}: {rows} rows, batch {batch}: total {:.3} s in {transactions} transactions, \
         longest transaction {:.1} ms; writer: {} creates, wait p50 {:.2} ms, p99 {:.2} ms, \
         max {:.1} ms",
        total.as_secs_f64(),
        longest.as_secs_f64() * 1e3,
        waits.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    if !slowest.is_empty() {
        slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        let top: Vec<String> = slowest
            .iter()
            .take(5)
            .map(|(d, i, n)| format!("#{i} ({n} rows) {:.1} ms", d.as_secs_f64() * 1e3))
            .collect();
        println!("  slowest steps of {transactions}: {}", top.join(", "));
    }
}
