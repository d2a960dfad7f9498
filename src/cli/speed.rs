//! `cofferfs speed`: what this machine's CPU allows, as `gocryptfs -speed` shows it. Times the
//! primitives cofferfs runs on every request, exactly as it calls them: AES-256-GCM sealing
//! and opening one on-disk chunk in place (random nonce, `file_id ‖ index` associated data) at
//! the chunk sizes a volume may use, AES-SIV name encryption, and Argon2id at the default
//! parameters (and at a volume's own, given its cipherdir). No file is read or written but the
//! header store, read-only, for the slots' parameters.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::CliError;
use crate::crypto::names::NameCipher;
use crate::crypto::{ChunkCipher, Fek, KdfParams, NameKey, random_nonce};
use crate::format::layout::{NONCE_LEN, TAG_LEN};
use crate::format::{FileHeader, FileId};
use crate::keystore::SlotKind;
use crate::volume::{self, VolumeError};

/// Chunk sizes measured: the default, the documented choice for big files, and the largest.
const CHUNK_SIZES: [usize; 3] = [4096, 65536, 1 << 20];
/// A typical plaintext name length in bytes (source trees average about 15–25).
const NAME_LEN: usize = 20;

/// Arguments of `cofferfs speed`.
#[derive(Debug, clap::Args)]
pub struct SpeedArgs {
    /// Also time Argon2id with the parameters of this volume's password slots.
    pub cipherdir: Option<PathBuf>,
    /// How long to run each AES measurement, in seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub seconds: f64,
    /// A rough run in well under a second per line (same as `--seconds 0.05`).
    #[arg(long, conflicts_with = "seconds")]
    pub quick: bool,
}

/// Calls `op` until `budget` has passed (at least once); returns calls and time taken.
fn repeat(budget: Duration, mut op: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut calls = 0;
    loop {
        op();
        calls += 1;
        let spent = start.elapsed();
        if spent >= budget {
            return (calls, spent);
        }
    }
}

/// Megabytes (10^6 bytes) per second for `calls` runs over `bytes` each.
fn mb_per_s(bytes: usize, (calls, spent): (u64, Duration)) -> f64 {
    (bytes as f64 * calls as f64) / spent.as_secs_f64() / 1e6
}

/// The CPU features AES-GCM and AES-SIV speed depends on. ring (content) and the `aes` and
/// `polyval` crates (names, key wrapping) pick AES-NI, VAES and carry-less multiplication at run
/// time, so a generic build uses them too.
fn cpu_line() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "cpu: x86-64, AES-NI {}, PCLMULQDQ {}, AVX2 {}, VAES {}",
            yes(std::is_x86_feature_detected!("aes")),
            yes(std::is_x86_feature_detected!("pclmulqdq")),
            yes(std::is_x86_feature_detected!("avx2")),
            yes(std::is_x86_feature_detected!("vaes")),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        format!(
            "cpu: {} (no x86-64 feature detection)",
            std::env::consts::ARCH
        )
    }
}

/// Seal and open throughput of one on-disk chunk of `chunk_len` plaintext bytes.
fn gcm_line(chunk_len: usize, budget: Duration) -> Result<String, CliError> {
    let fek = Fek::generate().map_err(VolumeError::from)?;
    let cipher = ChunkCipher::new(&fek, FileHeader::new(FileId([7; 16])));
    let mut chunk = vec![0x5a_u8; NONCE_LEN + chunk_len + TAG_LEN];
    let seal = repeat(budget, || {
        cipher.seal_in_place(3, false, &random_nonce(), black_box(&mut chunk));
    });
    let sealed = chunk.clone();
    let open = repeat(budget, || {
        chunk.copy_from_slice(&sealed);
        black_box(cipher.open_in_place(3, false, black_box(&mut chunk))).expect("own chunk opens");
    });
    let size = if chunk_len >= 1 << 20 {
        format!("{} MiB", chunk_len >> 20)
    } else {
        format!("{} KiB", chunk_len >> 10)
    };
    Ok(format!(
        "aes-256-gcm {size} chunks: seal {:.0} MB/s, open {:.0} MB/s",
        mb_per_s(chunk_len, seal),
        mb_per_s(chunk_len, open)
    ))
}

/// AES-SIV encryptions and decryptions of one entry name per second.
fn siv_line(budget: Duration) -> Result<String, CliError> {
    let names = NameCipher::new(NameKey::generate().map_err(VolumeError::from)?);
    let dir_id = [9u8; 16];
    let name = [b'n'; NAME_LEN];
    let enc = repeat(budget, || {
        black_box(names.encrypt_name(&dir_id, black_box(&name)));
    });
    let sealed = names.encrypt_name(&dir_id, &name);
    let dec = repeat(budget, || {
        black_box(names.decrypt_name(&dir_id, black_box(&sealed))).expect("own name opens");
    });
    let per_s = |(calls, spent): (u64, Duration)| calls as f64 / spent.as_secs_f64();
    Ok(format!(
        "aes-siv names ({NAME_LEN} bytes): encrypt {:.0}/s, decrypt {:.0}/s",
        per_s(enc),
        per_s(dec)
    ))
}

/// Seconds one Argon2id derivation with `kdf` takes: what one unlock attempt costs.
fn argon2_seconds(kdf: KdfParams) -> Result<f64, CliError> {
    let start = Instant::now();
    kdf.derive(b"cofferfs speed", &[0u8; 16])
        .map_err(VolumeError::from)?;
    Ok(start.elapsed().as_secs_f64())
}

fn kdf_text(kdf: KdfParams) -> String {
    format!("m={} KiB t={} p={}", kdf.m_kib, kdf.t, kdf.p)
}

/// One line per password slot of the volume in `cipherdir`, with its own Argon2id parameters.
fn volume_lines(cipherdir: &std::path::Path) -> Result<Vec<String>, CliError> {
    let store = volume::open_store_read_only(cipherdir)?;
    let slots = store.slots().map_err(VolumeError::from)?;
    let mut lines = Vec::new();
    for s in slots.iter().filter(|s| s.kind == SlotKind::Password) {
        let secs = argon2_seconds(s.kdf)?;
        lines.push(format!(
            "argon2id slot {} {:?} ({}): {secs:.3} s",
            s.slot_id,
            s.label,
            kdf_text(s.kdf)
        ));
    }
    Ok(lines)
}

/// Runs `speed`: prints one line per measurement as soon as it is done.
pub fn run(a: SpeedArgs) -> Result<(), CliError> {
    let seconds = if a.quick { 0.05 } else { a.seconds };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 60.0) {
        return Err(CliError::new(
            super::exit::USAGE,
            "--seconds must be above 0 and at most 60",
        ));
    }
    let budget = Duration::from_secs_f64(seconds);
    // Open the store first: a wrong cipherdir fails before any time is spent.
    if let Some(dir) = &a.cipherdir {
        volume::open_store_read_only(dir)?;
    }
    println!("{}", cpu_line());
    for len in CHUNK_SIZES {
        println!("{}", gcm_line(len, budget)?);
    }
    println!("{}", siv_line(budget)?);
    let kdf = KdfParams::default();
    let secs = argon2_seconds(kdf)?;
    println!("argon2id default ({}): {secs:.3} s", kdf_text(kdf));
    if let Some(dir) = &a.cipherdir {
        for line in volume_lines(dir)? {
            println!("{line}");
        }
    }
    Ok(())
}
