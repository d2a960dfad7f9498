//! The volume a command works on: CIPHERDIR and, when its header store is kept outside it,
//! `--header-store PATH`. Shared by every verb that opens an existing volume.

use std::path::PathBuf;

use super::CliError;
use crate::volume::Location;

/// CIPHERDIR and where its header store is.
#[derive(Debug, Clone, clap::Args)]
pub struct VolumeArgs {
    /// The ciphertext directory.
    pub cipherdir: PathBuf,
    /// The volume's header store, when it is kept outside the cipherdir (`init
    /// --header-store`).
    #[arg(long, value_name = "PATH")]
    pub header_store: Option<PathBuf>,
}

impl VolumeArgs {
    /// Finds the header store and checks that the cipherdir's marker agrees (the volume ids
    /// are compared when the store is opened).
    pub fn locate(&self) -> Result<Location, CliError> {
        Ok(Location::resolve(
            &self.cipherdir,
            self.header_store.as_deref(),
        )?)
    }
}
