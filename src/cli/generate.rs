//! `cofferfs generate man DIR` and `cofferfs generate completions SHELL`: the man pages and
//! shell completions, generated from the clap definitions so they can never disagree with
//! the binary. Packagers and `cargo install` users run them once at install time (README
//! "Install").

use std::path::PathBuf;

use clap::CommandFactory;

use super::{Cli, CliError, exit};

/// Arguments of `cofferfs generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Write the man pages (cofferfs.1 and cofferfs-VERB.1 for every verb) into DIR.
    Man {
        /// Where to write them (created if missing), e.g. /usr/local/share/man/man1.
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on standard output.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Runs `generate`.
pub fn run(a: GenerateArgs) -> Result<(), CliError> {
    match a.what {
        What::Man { dir } => {
            let fail = |e: std::io::Error| {
                CliError::new(exit::OTHER, format!("man pages in {}: {e}", dir.display()))
            };
            std::fs::create_dir_all(&dir).map_err(fail)?;
            clap_mangen::generate_to(Cli::command(), &dir).map_err(fail)
        }
        What::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cofferfs", &mut out);
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&out)
                .and_then(|_| stdout.flush())
                .map_err(|e| CliError::new(exit::OTHER, format!("standard output: {e}")))
        }
    }
}
