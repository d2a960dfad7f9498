//! `cofferfs share`, `cofferfs open-share` and `cofferfs shares list`: one file's key for one
//! recipient, without the volume's keys (see `share` for the format and README "Sharing one
//! file" for what a share can and cannot take back).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::present::format_utc;
use super::unlock::{UnlockArgs, open_for_management};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::hex::encode as hex;
use crate::keystore::shares::ShareRecord;
use crate::share::age_file::{self, Recipient};
use crate::share::payload::{self, SharedFile};
use crate::share::reader::{CiphertextError, Piece, SharedCiphertext, header_file_id};
use crate::volume::VolumeError;
use crate::volume::share::share_source;

/// Largest share file `open-share` reads (a share of 65,536 files with long paths is ~270 MiB).
const MAX_SHARE_LEN: u64 = 512 * 1024 * 1024;
/// Largest identity or recipients file read.
const MAX_KEY_FILE_LEN: u64 = 1024 * 1024;

/// Arguments of `cofferfs share`.
#[derive(Debug, clap::Args)]
pub struct ShareArgs {
    /// The volume (not mounted).
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Plaintext paths inside the volume of the regular files to share (e.g. `/docs/a.pdf`).
    #[arg(required_unless_present = "dirs")]
    pub paths: Vec<PathBuf>,
    /// Share every regular file below this directory of the volume (recipients are given
    /// with --to, not with age's -r).
    #[arg(short = 'r', long = "recursive", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Put the ciphertexts into the share too, so that the share alone is enough.
    #[arg(long)]
    pub bundle: bool,
    /// A recipient: an age X25519 public key (`age1…`) or an ssh-ed25519/ssh-rsa public key.
    #[arg(long = "to", value_name = "RECIPIENT")]
    pub to: Vec<String>,
    /// A file of recipients, one a line (`#` comments), as `age -R` reads.
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_file: Vec<PathBuf>,
    /// Where to write the share (an age file; an existing file is not overwritten).
    #[arg(short = 'o', long = "output", value_name = "SHARE")]
    pub output: PathBuf,
    /// Leave the plaintext paths, sizes and mtimes out of the share.
    #[arg(long)]
    pub no_names: bool,
    /// Print, last, the path of each shared file's ciphertext (what the recipient needs).
    #[arg(long)]
    pub print_cipher_path: bool,
    /// Try only this key slot.
    #[arg(long)]
    pub slot: Option<u32>,
    /// The secret: a password, or a key file.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// Arguments of `cofferfs open-share`.
#[derive(Debug, clap::Args)]
pub struct OpenShareArgs {
    /// The share (an age file made by `cofferfs share`).
    pub share: PathBuf,
    /// The ciphertext file(s) of the shared file(s), matched to the share by their file id.
    pub ciphertexts: Vec<PathBuf>,
    /// An identity file: `AGE-SECRET-KEY-1…` lines (as age-keygen writes) or an unencrypted
    /// ssh private key.
    #[arg(short = 'i', long, value_name = "FILE", required = true)]
    pub identity: Vec<PathBuf>,
    /// Where to write the plaintext: a file, `-` for standard output, or a directory (which
    /// a share of several files needs; it is created if missing).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
}

/// Arguments of `cofferfs shares`.
#[derive(Debug, clap::Args)]
pub struct SharesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SharesCommand,
}

/// `cofferfs shares` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SharesCommand {
    /// List the shares made of this volume's files (no password needed, no secrets shown).
    List(VolumeArgs),
}

fn unreadable(what: impl std::fmt::Display) -> CliError {
    CliError::new(exit::SHARE_UNREADABLE, what.to_string())
}

/// Reads a small file whole (identity, recipients), refusing anything above `max`.
fn read_small(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(out)
}

fn recipients(a: &ShareArgs) -> Result<Vec<Recipient>, CliError> {
    let usage = |e: &dyn std::fmt::Display| CliError::new(exit::USAGE, e.to_string());
    let mut out = Vec::new();
    for r in &a.to {
        out.push(age_file::parse_recipient(r).map_err(|e| usage(&e))?);
    }
    for f in &a.recipients_file {
        let bytes = read_small(f, MAX_KEY_FILE_LEN)
            .map_err(|e| usage(&format!("recipients file {}: {e}", f.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| usage(&format!("recipients file {}: not UTF-8", f.display())))?;
        let mut rs = age_file::parse_recipients_file(&text)
            .map_err(|e| usage(&format!("recipients file {}: {e}", f.display())))?;
        out.append(&mut rs);
    }
    if out.is_empty() {
        return Err(usage(&"no recipient: give --to RECIPIENT or -R FILE"));
    }
    Ok(out)
}

/// A random 16-byte id.
fn random_id() -> Result<[u8; 16], CliError> {
    let mut id = [0u8; 16];
    crate::crypto::os_random(&mut id).map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    Ok(id)
}

/// A temporary name next to `target`, in its directory.
fn temp_beside(target: &Path) -> Result<PathBuf, CliError> {
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty());
    let base = target
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let name = format!(".{base}.cofferfs-{}", hex(&random_id()?[..8]));
    Ok(dir.map_or_else(|| PathBuf::from(&name), |d| d.join(&name)))
}

/// The plaintext paths of the regular files below plaintext directory `dir` (each inode once:
/// hard links share one key); entries whose names do not decrypt are skipped with a warning.
fn files_below(vol: &crate::volume::Volume, dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    use std::os::unix::fs::MetadataExt;
    let cipher = crate::volume::reencrypt::resolve(vol, dir)?;
    if !std::fs::metadata(vol.root().join(&cipher)).is_ok_and(|m| m.is_dir()) {
        return Err(CliError::new(
            exit::OTHER,
            format!("-r {}: not a directory of the volume", dir.display()),
        ));
    }
    let plain = format!("/{}", crate::volume::share::share_path(dir).display());
    let plain = plain.trim_end_matches('/').to_owned();
    let w = crate::volume::walk::walk(vol, &cipher, Some(plain))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for e in w.entries {
        if e.kind != crate::volume::walk::EntryKind::File
            || !seen.insert((e.meta.dev(), e.meta.ino()))
        {
            continue;
        }
        match &e.loc.plain {
            Some(p) => out.push(PathBuf::from(p)),
            None => eprintln!("cofferfs: skipped {}: its name does not decrypt", e.loc),
        }
    }
    out.sort();
    Ok(out)
}

/// Runs `share`.
pub fn run_share(a: ShareArgs) -> Result<(), CliError> {
    let recipients = recipients(&a)?;
    if a.output.exists() {
        return Err(CliError::new(
            exit::OTHER,
            format!(
                "{}: exists already (a share is never overwritten)",
                a.output.display()
            ),
        ));
    }
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(CliError::new(
            exit::OTHER,
            format!("{}: no such directory", dir.display()),
        ));
    }
    let loc = a.volume.locate()?;
    let (vol, secret) = open_for_management(&loc, &a.unlock, a.slot)?;
    drop(secret);
    vol.upgrade_format_version()?;
    let mut paths = a.paths.clone();
    for d in &a.dirs {
        paths.extend(files_below(&vol, d)?);
    }
    let mut sources = Vec::new();
    for p in &paths {
        let src = share_source(&vol, p, !a.no_names).map_err(|e| match e {
            VolumeError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => CliError::new(
                exit::OTHER,
                format!("{}: no such file in the volume", p.display()),
            ),
            e => CliError::from(e),
        })?;
        sources.push(src);
    }
    if sources.is_empty() {
        return Err(CliError::new(exit::OTHER, "no regular file to share"));
    }
    let (entries, ciphers): (Vec<SharedFile>, Vec<PathBuf>) =
        sources.into_iter().map(|s| (s.entry, s.cipher)).unzip();
    let bundle = if a.bundle {
        let mut cts = Vec::with_capacity(ciphers.len());
        for c in &ciphers {
            let path = vol.root().join(c);
            cts.push(
                std::fs::read(&path)
                    .map_err(|e| CliError::new(exit::OTHER, format!("{}: {e}", path.display())))?,
            );
        }
        Some(cts)
    } else {
        None
    };
    let bytes = payload::encode_bundled(&entries, !a.no_names, bundle.as_deref())
        .map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    let file = age_file::encrypt(&bytes, &recipients)
        .map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    drop(bytes);
    // Written beside SHARE, recorded, then linked into place: no half share under its name,
    // and no share without its record.
    let tmp = temp_beside(&a.output)?;
    let io = |e: std::io::Error| CliError::new(exit::OTHER, format!("{}: {e}", a.output.display()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    let written = f.write_all(&file).and_then(|()| f.sync_all());
    drop(f);
    let record = ShareRecord {
        share_id: random_id()?,
        recipients: recipients.iter().map(|r| r.text.clone()).collect(),
        file_ids: entries.iter().filter_map(|e| e.file_id).collect(),
        created: crate::keystore::store::now_secs(),
    };
    let done = written.map_err(io).and_then(|()| {
        vol.keyring()
            .store()
            .record_share(&record)
            .map_err(|e| CliError::from(VolumeError::from(e)))?;
        std::fs::hard_link(&tmp, &a.output).map_err(io)
    });
    let _ = std::fs::remove_file(&tmp);
    done?;
    println!(
        "shared {} file(s) with {} recipient(s): share {} written to {}",
        entries.len(),
        recipients.len(),
        record.id_hex(),
        a.output.display()
    );
    if a.print_cipher_path {
        for c in &ciphers {
            println!("{}", loc.cipherdir().join(c).display());
        }
    }
    Ok(())
}

/// Where one entry's plaintext goes.
enum Dest {
    Stdout,
    File(PathBuf),
}

/// Writes one entry's plaintext to `out` through a temporary file in its directory, renamed
/// over `out` only once every chunk has authenticated.
fn write_file(
    ct: &SharedCiphertext,
    entry: &SharedFile,
    out: &Path,
    cipher: &Path,
) -> Result<(), CliError> {
    let tmp = temp_beside(out)?;
    let io = |e: std::io::Error| CliError::new(exit::OTHER, format!("{}: {e}", out.display()));
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&tmp)
        .map_err(io)?;
    let result = (|| {
        let mut off = 0u64;
        ct.for_each_piece(|p| {
            match p {
                Piece::Data(d) => {
                    f.write_all_at(d, off)?;
                    off += d.len() as u64;
                }
                Piece::Hole(n) => off += n as u64,
            }
            Ok(())
        })
        .map_err(|e| ciphertext_error(cipher, e))?;
        f.set_len(ct.plain_size()).map_err(io)?;
        if let Some(n) = &entry.name {
            let t = std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(
                n.mtime_secs.max(0) as u64,
                n.mtime_nsecs,
            ));
            if let Some(t) = t {
                f.set_modified(t).map_err(io)?;
            }
        }
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, out).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn ciphertext_error(what: &Path, e: CiphertextError) -> CliError {
    match e {
        CiphertextError::Io(io) => CliError::new(exit::OTHER, format!("{}: {io}", what.display())),
        e => CliError::new(
            exit::CIPHERTEXT_UNAUTHENTIC,
            format!("{}: {e}", what.display()),
        ),
    }
}

fn write_stdout(ct: &SharedCiphertext, cipher: &Path) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let zeros = vec![0u8; 64 * 1024];
    ct.for_each_piece(|p| match p {
        Piece::Data(d) => w.write_all(d),
        Piece::Hole(mut n) => {
            while n > 0 {
                let k = n.min(zeros.len());
                w.write_all(&zeros[..k])?;
                n -= k;
            }
            Ok(())
        }
    })
    .map_err(|e| ciphertext_error(cipher, e))?;
    w.flush()
        .map_err(|e| CliError::new(exit::OTHER, format!("standard output: {e}")))
}

/// An unnamed file in `dir` holding `bytes` (a bundled ciphertext, read back from there by
/// the chunk reader): `O_TMPFILE` where the filesystem has it, else a file removed at once.
fn scratch_file(dir: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let f = match OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        Ok(f) => f,
        Err(_) => {
            let mut r = [0u8; 8];
            crate::crypto::os_random(&mut r).map_err(std::io::Error::other)?;
            let name = dir.join(format!(".cofferfs-bundle-{}", hex(&r)));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&name)?;
            std::fs::remove_file(&name)?;
            f
        }
    };
    f.write_all_at(bytes, 0)?;
    Ok(f)
}

/// The name an entry is written under below a directory.
fn entry_name(e: &SharedFile, k: usize) -> PathBuf {
    match (&e.name, e.file_id) {
        (Some(n), _) => n.path.clone(),
        (None, Some(id)) => PathBuf::from(id.to_string()),
        (None, None) => PathBuf::from(format!("empty-{k}")),
    }
}

/// Reads every identity file given with `--identity`.
fn read_identities(paths: &[PathBuf]) -> Result<age_file::Identities, CliError> {
    let mut identities = Vec::new();
    for path in paths {
        let fail = |e: std::io::Error| unreadable(format!("identity file {}: {e}", path.display()));
        let bytes = crate::sys::read_secret(&mut File::open(path).map_err(fail)?, MAX_KEY_FILE_LEN)
            .map_err(fail)?;
        if bytes.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(fail(std::io::Error::other(format!(
                "larger than {MAX_KEY_FILE_LEN} bytes"
            ))));
        }
        let mut ids = age_file::parse_identities(&bytes, &path.display().to_string())
            .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
        identities.append(&mut ids);
    }
    Ok(identities)
}

/// Matches the ciphertext files given to the share's entries by the file id in their header
/// (a 0-byte file goes to an empty entry without a key); a share of one file takes its one
/// ciphertext as it is, so that a foreign one fails as such. Every entry with a key needs one.
fn match_ciphertexts(
    entries: &[SharedFile],
    ciphertexts: &[PathBuf],
) -> Result<Vec<Option<PathBuf>>, CliError> {
    let mut cipher_of: Vec<Option<PathBuf>> = vec![None; entries.len()];
    if entries.len() == 1 && ciphertexts.len() == 1 {
        cipher_of[0] = Some(ciphertexts[0].clone());
        return Ok(cipher_of);
    }
    let io =
        |c: &Path, e: std::io::Error| CliError::new(exit::OTHER, format!("{}: {e}", c.display()));
    for c in ciphertexts {
        let f = File::open(c).map_err(|e| io(c, e))?;
        let id = header_file_id(&f).map_err(|e| io(c, e))?;
        let empty = f.metadata().map_err(|e| io(c, e))?.len() == 0;
        let k = (0..entries.len()).find(|&k| {
            let e = &entries[k];
            (id.is_some() && e.file_id == id)
                || (empty && e.file_id.is_none() && cipher_of[k].is_none())
        });
        let k = k.ok_or_else(|| {
            CliError::new(
                exit::CIPHERTEXT_UNAUTHENTIC,
                format!(
                    "{}: not the ciphertext of any file in the share",
                    c.display()
                ),
            )
        })?;
        cipher_of[k] = Some(c.clone());
    }
    for (k, (e, c)) in entries.iter().zip(&cipher_of).enumerate() {
        if c.is_none() && e.file_id.is_some() {
            return Err(CliError::new(
                exit::USAGE,
                format!(
                    "no ciphertext given for {} (give its ciphertext file after the share)",
                    entry_name(e, k).display()
                ),
            ));
        }
    }
    Ok(cipher_of)
}

/// Checks `-o` against the number of files and creates the directory a share of several
/// files needs; returns whether OUT is a directory.
fn prepare_output(out: &Path, files: usize) -> Result<bool, CliError> {
    let out_is_dir = out.is_dir();
    if files > 1 && out.as_os_str() == "-" {
        return Err(CliError::new(
            exit::USAGE,
            "-o -: a share of several files needs a directory",
        ));
    }
    if files > 1 && !out_is_dir {
        if out.exists() {
            return Err(CliError::new(
                exit::USAGE,
                format!(
                    "{}: a share of several files needs a directory",
                    out.display()
                ),
            ));
        }
        std::fs::create_dir_all(out)
            .map_err(|e| CliError::new(exit::OTHER, format!("{}: {e}", out.display())))?;
        return Ok(true);
    }
    Ok(out_is_dir)
}

/// Where entry `k` of a share of `files` files goes: standard output, OUT itself, or its
/// path below the directory OUT (its file name only, for a share of one file), with the
/// directories on the way created.
fn destination(
    out: &Path,
    out_is_dir: bool,
    files: usize,
    e: &SharedFile,
    k: usize,
) -> Result<Dest, CliError> {
    if out.as_os_str() == "-" {
        return Ok(Dest::Stdout);
    }
    if !out_is_dir {
        return Ok(Dest::File(out.to_owned()));
    }
    let rel = entry_name(e, k);
    // Decoded paths are relative with normal components only; checked again here.
    if !payload::is_safe_relative(&rel) {
        return Err(unreadable(format!(
            "unsafe path in the share: {}",
            rel.display()
        )));
    }
    let rel = if files == 1 {
        PathBuf::from(rel.file_name().unwrap_or(rel.as_os_str()))
    } else {
        rel
    };
    let p = out.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::new(exit::OTHER, format!("{}: {e}", parent.display())))?;
    }
    Ok(Dest::File(p))
}

/// Runs `open-share`.
pub fn run_open_share(a: OpenShareArgs) -> Result<(), CliError> {
    let identities = read_identities(&a.identity)?;
    let share = read_small(&a.share, MAX_SHARE_LEN)
        .map_err(|e| unreadable(format!("{}: {e}", a.share.display())))?;
    let plain = age_file::decrypt(&share, &identities).map_err(|e| {
        unreadable(format!(
            "{}: cannot open the share: {e} (wrong identity, not an age file, or tampered)",
            a.share.display()
        ))
    })?;
    let (entries, bundle) = payload::decode_bundled(&plain)
        .map_err(|e| unreadable(format!("{}: {e}", a.share.display())))?;
    let cipher_of = match &bundle {
        Some(_) if !a.ciphertexts.is_empty() => {
            return Err(CliError::new(
                exit::USAGE,
                "the share carries its ciphertext (--bundle): give no CIPHERFILE",
            ));
        }
        Some(_) => vec![None; entries.len()],
        None => match_ciphertexts(&entries, &a.ciphertexts)?,
    };
    let out_is_dir = prepare_output(&a.output, entries.len())?;
    for (k, (e, c)) in entries.iter().zip(&cipher_of).enumerate() {
        let dest = destination(&a.output, out_is_dir, entries.len(), e, k)?;
        let (file, shown) = match (&bundle, c) {
            (Some(b), _) => {
                // Read back from an unnamed file beside the output by the same reader.
                let dir = match &dest {
                    Dest::File(p) => p.parent().map(Path::to_owned).unwrap_or_default(),
                    Dest::Stdout => std::env::temp_dir(),
                };
                let f = scratch_file(&dir, b[k])
                    .map_err(|e| CliError::new(exit::OTHER, format!("{}: {e}", dir.display())))?;
                (f, PathBuf::from(format!("{} (bundled)", a.share.display())))
            }
            (None, Some(c)) => (
                File::open(c)
                    .map_err(|e| CliError::new(exit::OTHER, format!("{}: {e}", c.display())))?,
                c.clone(),
            ),
            // An empty file without a key: nothing to read.
            (None, None) => (
                File::open("/dev/null").map_err(|e| CliError::new(exit::OTHER, e.to_string()))?,
                PathBuf::from("(empty)"),
            ),
        };
        let ct = SharedCiphertext::open(file, e).map_err(|err| ciphertext_error(&shown, err))?;
        match dest {
            Dest::Stdout => write_stdout(&ct, &shown)?,
            Dest::File(p) => write_file(&ct, e, &p, &shown)?,
        }
    }
    Ok(())
}

/// Runs `shares`.
pub fn run_shares(a: SharesArgs) -> Result<(), CliError> {
    match a.command {
        SharesCommand::List(v) => {
            let loc = v.locate()?;
            let store = crate::volume::open_store_read_only_at(&loc)?;
            let shares = store.shares().map_err(VolumeError::from)?;
            if shares.is_empty() {
                println!("no shares recorded");
            }
            for s in &shares {
                println!("share {} created {}", s.id_hex(), format_utc(s.created));
                for r in &s.recipients {
                    println!("  to {r}");
                }
                for id in &s.file_ids {
                    let live = store.file_key(id).map_err(VolumeError::from)?.is_some();
                    let state = if live {
                        "key live: the recipient can read this file's current ciphertext"
                    } else {
                        "key gone (re-encrypted or deleted): share ended for new content"
                    };
                    println!("  file {id}: {state}");
                }
            }
            Ok(())
        }
    }
}
