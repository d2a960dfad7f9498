//! `cofferfs keys …`: key slots as LUKS has them (list, add, remove) and key-file creation.
//! One file per verb.

pub mod add;
pub mod list;
pub mod new_keyfile;
pub mod remove;
pub mod rewrap;

use super::CliError;

/// Arguments of `cofferfs keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// List the key slots: id, kind, label, KDF parameters, creation time (no secret needed).
    List(list::ListArgs),
    /// Add a key slot (a new password or a key file); needs a secret of an existing slot.
    Add(Box<add::AddArgs>),
    /// Remove a key slot; needs the secret of another slot, and never removes the last one.
    Remove(remove::RemoveArgs),
    /// Re-wrap a Transit slot to its Vault key's newest version (`transit/rewrap`; no secret).
    Rewrap(rewrap::RewrapArgs),
    /// Write a new random key file (64 bytes, mode 0600); never overwrites.
    NewKeyfile(new_keyfile::NewKeyfileArgs),
}

/// Runs `keys`.
pub fn run(a: KeysArgs) -> Result<(), CliError> {
    match a.command {
        KeysCommand::List(a) => list::run(a),
        KeysCommand::Add(a) => add::run(*a),
        KeysCommand::Remove(a) => remove::run(a),
        KeysCommand::NewKeyfile(a) => new_keyfile::run(a),
        KeysCommand::Rewrap(a) => rewrap::run(a),
    }
}
