//! Throughput of the volume layer per chunk size, without FUSE: sequential 1 MiB writes and
//! reads through `ChunkedFile`, then 4 KiB random writes and reads, against the same operations
//! on a plain file in the same directory, plus raw AES-256-GCM speed for context.
//!
//! ```text
//! cargo run --release --example volume_bench -- [--dir DIR] [--size-mib N] [--ops N] CHUNK…
//! ```
//! `DIR` must be on a real disk (default `/var/tmp`), not tmpfs. The page cache is dropped
//! before each read phase when `/proc/sys/vm/drop_caches` is writable (root), else the reads
//! come from the cache and the output says so.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use cofferfs::crypto::KdfParams;
use cofferfs::volume::{self, InitOptions, Volume};

const MIB: usize = 1 << 20;
const SMALL_IO: usize = 4096;

struct Args {
    dir: PathBuf,
    size_mib: usize,
    ops: usize,
    chunks: Vec<u32>,
}

fn parse_args() -> Args {
    let mut a = Args {
        dir: PathBuf::from("/var/tmp"),
        size_mib: 256,
        ops: 20_000,
        chunks: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => a.dir = PathBuf::from(val()),
            "--size-mib" => a.size_mib = val().parse().expect("--size-mib N"),
            "--ops" => a.ops = val().parse().expect("--ops N"),
            s => a.chunks.push(s.parse().expect("chunk sizes are integers")),
        }
    }
    if a.chunks.is_empty() {
        a.chunks = vec![4096, 16384, 65536];
    }
    a
}

/// The operations the benchmark needs, on an encrypted or a plain file.
trait Target {
    fn write_at(&self, data: &[u8], off: u64);
    fn read_at(&self, buf: &mut [u8], off: u64);
    fn sync(&self);
}

struct Plain(File);

impl Target for Plain {
    fn write_at(&self, data: &[u8], off: u64) {
        self.0.write_all_at(data, off).expect("plain write");
    }
    fn read_at(&self, buf: &mut [u8], off: u64) {
        self.0.read_exact_at(buf, off).expect("plain read");
    }
    fn sync(&self) {
        self.0.sync_all().expect("plain fsync");
    }
}

struct Encrypted {
    file: volume::ChunkedFile,
}

impl Target for Encrypted {
    fn write_at(&self, data: &[u8], off: u64) {
        self.file.write_at(data, off).expect("volume write");
    }
    fn read_at(&self, buf: &mut [u8], off: u64) {
        let n = self.file.read_at(buf, off).expect("volume read");
        assert_eq!(n, buf.len(), "short read at {off}");
    }
    fn sync(&self) {
        self.file.sync(false).expect("volume fsync");
    }
}

/// Drops the page cache; false when not permitted (not root, or a read-only /proc).
fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// A small deterministic PRNG (xorshift64*): the same offsets for every chunk size.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn mb_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn fill(buf: &mut [u8], seed: u64) {
    let mut r = Rng(seed | 1);
    for b in buf.iter_mut() {
        *b = r.below(256) as u8;
    }
}

/// Runs every phase against `t` and prints one line.
fn bench(label: &str, t: &dyn Target, size: usize, ops: usize) {
    let mut buf = vec![0u8; MIB];
    fill(&mut buf, 7);

    let start = Instant::now();
    for i in 0..size / MIB {
        buf[0] = i as u8;
        t.write_at(&buf, (i * MIB) as u64);
    }
    t.sync();
    let seq_w = start.elapsed();

    let cold = drop_caches();
    let start = Instant::now();
    for i in 0..size / MIB {
        t.read_at(&mut buf, (i * MIB) as u64);
        assert_eq!(buf[0], i as u8, "read back what was written");
    }
    let seq_r = start.elapsed();

    let blocks = (size / SMALL_IO) as u64;
    let mut small = vec![0u8; SMALL_IO];
    fill(&mut small, 11);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    for _ in 0..ops {
        t.write_at(&small, rng.below(blocks) * SMALL_IO as u64);
    }
    t.sync();
    let rand_w = start.elapsed();

    drop_caches();
    let start = Instant::now();
    for _ in 0..ops {
        t.read_at(&mut small, rng.below(blocks) * SMALL_IO as u64);
    }
    let rand_r = start.elapsed();

    println!(
        "{label:<10} seq write {:7.1} MB/s  seq read {:7.1} MB/s{}  rand 4K write {:7.0} IOPS  rand 4K read {:7.0} IOPS",
        mb_s(size, seq_w),
        mb_s(size, seq_r),
        if cold { " (cold)" } else { " (cached)" },
        ops as f64 / rand_w.as_secs_f64(),
        ops as f64 / rand_r.as_secs_f64(),
    );
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create bench file")
}

fn bench_volume(dir: &Path, chunk: u32, size: usize, ops: usize) {
    let cipherdir = dir.join(format!("vol-{chunk}"));
    let opts = InitOptions {
        chunk_len: chunk,
        kdf: KdfParams::insecure_for_tests(),
        ..Default::default()
    };
    volume::init(&cipherdir, b"bench", &opts).expect("init bench volume");
    let vol = Volume::open(&cipherdir, b"bench", None).expect("open bench volume");
    let file = vol
        .create_file(rw(&cipherdir.join("data")))
        .expect("create");
    let t = Encrypted { file };
    bench(&format!("chunk {chunk}"), &t, size, ops);
    drop(t);
    drop(vol);
    std::fs::remove_dir_all(&cipherdir).expect("clean up");
}

/// Raw AES-256-GCM seal and open over `len`-byte buffers, in MB/s of plaintext.
fn bench_aes(len: usize) {
    let aead = Aes256Gcm::new_from_slice(&[7u8; 32]).expect("32-byte key");
    let mut buf = vec![0u8; len];
    fill(&mut buf, 3);
    let aad = [0u8; 24];
    let total = 512 * MIB;
    let rounds = total / len;
    let start = Instant::now();
    let mut tags = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = aead
            .encrypt_inout_detached(&Nonce::from(n), &aad, buf.as_mut_slice().into())
            .expect("seal");
        tags.push((n, tag));
    }
    let seal = start.elapsed();
    // Open only the last seal (the buffer was sealed over and over); time open separately.
    let start = Instant::now();
    let (n, tag) = tags[rounds - 1];
    let mut ok = 0usize;
    for _ in 0..rounds {
        let mut b = buf.clone();
        if aead
            .decrypt_inout_detached(&Nonce::from(n), &aad, b.as_mut_slice().into(), &tag)
            .is_ok()
        {
            ok += 1;
        }
    }
    let open = start.elapsed();
    assert_eq!(ok, rounds, "every open succeeds");
    println!(
        "aes-256-gcm {len:>7} B  seal {:7.0} MB/s  open {:7.0} MB/s (open includes a buffer copy)",
        mb_s(total, seal),
        mb_s(total, open)
    );
}

fn main() {
    let a = parse_args();
    let size = a.size_mib * MIB;
    let dir = a.dir.join(format!("cofferfs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    println!(
        "dir {}  file {} MiB  random ops {}  page cache drop: {}",
        dir.display(),
        a.size_mib,
        a.ops,
        if drop_caches() {
            "yes"
        } else {
            "not permitted"
        }
    );
    for len in [4096, 16384, 65536, MIB] {
        bench_aes(len);
    }
    {
        let path = dir.join("plain");
        bench("plain file", &Plain(rw(&path)), size, a.ops);
        std::fs::remove_file(&path).expect("clean up");
    }
    for &chunk in &a.chunks {
        bench_volume(&dir, chunk, size, a.ops);
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
