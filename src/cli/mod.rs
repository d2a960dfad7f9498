//! The `cofferfs` command line: argument parsing, one file per verb, password input and the
//! exit-code table. The only layer that prints to the user or exits.

pub mod exit;
pub mod fsck;
pub mod header;
pub mod info;
pub mod init;
pub mod keys;
pub mod mount;
pub mod passwd;
pub mod password;
pub mod reencrypt;
pub mod rotate;
pub mod speed;
pub mod unlock;
pub mod volume_args;

use std::io::Write;

use clap::{Parser, Subcommand};

/// cofferfs: an encrypted overlay filesystem with per-file keys and key rotation.
#[derive(Debug, Parser)]
#[command(name = "cofferfs", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new volume in CIPHERDIR (created if missing, must be empty).
    Init(init::InitArgs),
    /// Show a volume's format and key slots (no password needed, no secrets shown).
    Info(info::InfoArgs),
    /// Mount a volume: the plaintext view of CIPHERDIR appears at MOUNTPOINT.
    Mount(mount::MountArgs),
    /// Unmount a mounted volume and wait for its daemon to finish.
    #[command(alias = "unmount")]
    Umount(mount::UmountArgs),
    /// Check a volume (unmounted) and, with --repair, fix what can be fixed without data loss.
    Fsck(fsck::FsckArgs),
    /// Give files a new key and rewrite their content (unmounted volume).
    Reencrypt(reencrypt::ReencryptArgs),
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
}

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
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,fuser::mnt=error"),
    )
    .format_timestamp(None)
    .init();
    let cli = Cli::parse();
    // The mount daemon keeps SIGPIPE ignored (see `sys::default_sigpipe`); every other command
    // ends quietly on a closed pipe, as coreutils do.
    if !matches!(cli.command, Command::Mount(_)) {
        crate::sys::default_sigpipe();
    }
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Info(a) => info::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => mount::run_umount(a),
        Command::Fsck(a) => fsck::run(a),
        Command::Reencrypt(a) => reencrypt::run(a),
        Command::Keys(a) => keys::run(a),
        Command::Passwd(a) => passwd::run(a),
        Command::Rotate(a) => rotate::run(a),
        Command::Speed(a) => speed::run(a),
        Command::Header(a) => header::run(a),
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
