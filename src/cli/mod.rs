//! The `cofferfs` command line: argument parsing, one file per verb (`mount/` and `keys/` are
//! folders: a verb with parts), how secrets are read (`password`, `unlock`: the one way every
//! verb unlocks a volume), how things are shown (`present`), logging, and the exit-code table
//! (`exit`: every error variant mapped by name).
//!
//! Owns: what the user types and sees. The only layer that prints to the user or exits: no
//! other folder calls `println!`/`eprintln!` or `process::exit`; they return errors, which
//! [`main`] prints as one line with the code `exit` gives them. Must not import: `rusqlite`
//! (the header store is reached through `keystore`/`volume`), and `fuser` or `crate::fs`
//! anywhere but the mount daemon (`mount/daemon.rs`, `mount/options.rs`). Nothing imports `cli`.

pub mod exit;
pub mod fsck;
pub mod generate;
pub mod harden;
pub mod header;
pub mod helper_form;
pub mod info;
pub mod init;
pub mod keys;
pub mod logging;
pub mod mount;
pub mod online;
pub mod passwd;
pub mod password;
pub mod pkcs11;
pub mod present;
pub mod reencrypt;
pub mod rotate;
pub mod share;
pub mod speed;
pub mod status;
pub mod transit;
pub mod unlock;
pub mod volume_args;

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

/// cofferfs: an encrypted overlay filesystem with per-file keys and key rotation.
#[derive(Debug, Parser)]
#[command(
    name = "cofferfs",
    version,
    about,
    long_about = None,
    after_long_help = HELPER_FORM_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new volume in CIPHERDIR (created if missing, mode 0700; must be empty).
    Init(init::InitArgs),
    /// Show a volume's format and key slots (no password needed, no secrets shown).
    Info(info::InfoArgs),
    /// Whether a volume is mounted, and its daemon's state: pid, uptime, open files, KEK
    /// generation, rotation progress (exit 60 when not mounted).
    Status(status::StatusArgs),
    /// Mount a volume: the plaintext view of CIPHERDIR appears at MOUNTPOINT.
    Mount(mount::MountArgs),
    /// Unmount a mounted volume and wait for its daemon to finish.
    #[command(alias = "unmount")]
    Umount(mount::UmountArgs),
    /// Check a volume (unmounted) and, with --repair, fix what can be fixed without data loss.
    Fsck(fsck::FsckArgs),
    /// Give files a new key and rewrite their content (unmounted volume).
    Reencrypt(reencrypt::ReencryptArgs),
    /// Share files: their keys, and nothing else of the volume, encrypted to age or ssh keys.
    Share(share::ShareArgs),
    /// Decrypt a shared file with the share, an identity and its ciphertext (no volume needed).
    OpenShare(share::OpenShareArgs),
    /// The shares recorded in the header store: `shares list`.
    Shares(share::SharesArgs),
    /// Manage key slots: list, add, remove; make key files.
    Keys(keys::KeysArgs),
    /// Change the password of one key slot (O(1): nothing else is re-encrypted).
    Passwd(passwd::PasswdArgs),
    /// Replace the KEK: re-wrap every file key in one transaction (no content is touched).
    Rotate(rotate::RotateArgs),
    /// Back up or restore the header store (as cryptsetup luksHeaderBackup/Restore).
    Header(header::HeaderArgs),
    /// Measure this machine: AES-256-GCM per chunk size, AES-SIV names, Argon2id unlock time.
    Speed(speed::SpeedArgs),
    /// Write the man pages or print shell completions (for installing cofferfs).
    Generate(generate::GenerateArgs),
}

/// The mount-helper form, in `--help` and the man page.
const HELPER_FORM_HELP: &str = "\
Mount helper form: `cofferfs CIPHERDIR MOUNTPOINT -o OPTIONS` is `cofferfs mount`, as called by \
`mount -t fuse.cofferfs CIPHERDIR MOUNTPOINT -o OPTIONS` and by an /etc/fstab line of type \
fuse.cofferfs. OPTIONS: passfile=FILE, keyfile=FILE, extpass=\"CMD\", header_store=PATH, \
idle=DURATION, slot=N, threads=N, max_inodes=N, \
fsname=NAME, ro, allow_other, no_writeback_cache, no_xattr, nosyslog, \
allow_suid_dev, and the mount options of `cofferfs mount -o`; fstab-only options (_netdev, \
nofail, noauto, user, x-systemd.*) are ignored.";

/// An error for the user: a message and the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// Exit code from [`exit`].
    pub code: i32,
    /// What to print after "cofferfs: ".
    pub message: String,
}

impl CliError {
    /// An error with an explicit code.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::volume::VolumeError> for CliError {
    fn from(e: crate::volume::VolumeError) -> Self {
        CliError {
            code: exit::code_for(&e),
            message: e.to_string(),
        }
    }
}

impl From<crate::transit::TransitError> for CliError {
    fn from(e: crate::transit::TransitError) -> Self {
        CliError {
            code: exit::code_for_transit(&e),
            message: e.to_string(),
        }
    }
}

impl From<crate::pkcs11::Pkcs11Error> for CliError {
    fn from(e: crate::pkcs11::Pkcs11Error) -> Self {
        CliError {
            code: exit::code_for_pkcs11(&e),
            message: e.to_string(),
        }
    }
}

impl From<password::PasswordError> for CliError {
    fn from(e: password::PasswordError) -> Self {
        CliError {
            code: exit::PASSWORD_INPUT,
            message: e.to_string(),
        }
    }
}

/// Entry point of the binary: parse, run, print the error, return the exit code.
pub fn main() -> i32 {
    logging::init();
    // Before any secret is read: no command of ours may leave one in a core dump.
    harden::protect_process();
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if helper_form::is_helper_form(&argv, &subcommand_names()) {
        argv = match helper_form::rewrite(&argv) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("cofferfs: {}", e.message);
                return e.code;
            }
        };
    }
    let cli = Cli::parse_from(argv);
    // The mount daemon keeps SIGPIPE ignored (see `sys::default_sigpipe`); every other command
    // ends quietly on a closed pipe, as coreutils do.
    if !matches!(cli.command, Command::Mount(_)) {
        crate::sys::default_sigpipe();
    }
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Info(a) => info::run(a),
        Command::Status(a) => status::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => mount::run_umount(a),
        Command::Fsck(a) => fsck::run(a),
        Command::Reencrypt(a) => reencrypt::run(a),
        Command::Share(a) => share::run_share(a),
        Command::OpenShare(a) => share::run_open_share(a),
        Command::Shares(a) => share::run_shares(a),
        Command::Keys(a) => keys::run(a),
        Command::Passwd(a) => passwd::run(a),
        Command::Rotate(a) => rotate::run(a),
        Command::Speed(a) => speed::run(a),
        Command::Header(a) => header::run(a),
        Command::Generate(a) => generate::run(a),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(std::io::stderr(), "cofferfs: {}", e.message);
            e.code
        }
    }
}

/// Every word that names a subcommand (aliases and `help` included): the mount-helper form is
/// recognised by its first argument being none of them.
fn subcommand_names() -> Vec<String> {
    let cmd = Cli::command();
    let mut names = vec!["help".to_owned()];
    for sub in cmd.get_subcommands() {
        names.push(sub.get_name().to_owned());
        names.extend(sub.get_all_aliases().map(str::to_owned));
    }
    names
}
