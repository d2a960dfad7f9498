//! `cofferfs status CIPHERDIR|MOUNTPOINT`: whether a volume is mounted and what its daemon is
//! doing (pid, uptime, open files, KEK generation, a rotation's progress), asked over the
//! daemon's control socket. Needs no secret: the answer holds no key material. An unmounted
//! volume is exit 60.

use std::path::PathBuf;

use super::online::{daemon_socket, send};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::control::protocol::Request;

/// Arguments of `cofferfs status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The cipherdir, or the mountpoint of a mounted volume.
    pub path: PathBuf,
    /// The volume's header store, when it is kept outside the cipherdir.
    #[arg(long, value_name = "PATH")]
    pub header_store: Option<PathBuf>,
    /// Print the daemon's answer as JSON (one object).
    #[arg(long)]
    pub json: bool,
}

/// The cipherdir of `path`: itself, or the source of the cofferfs mount on it.
fn cipherdir_of(path: &std::path::Path) -> PathBuf {
    super::mount::cofferfs_source(path).map_or_else(|| path.to_owned(), PathBuf::from)
}

fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// Runs `status`.
pub fn run(a: StatusArgs) -> Result<(), CliError> {
    let volume = VolumeArgs {
        cipherdir: cipherdir_of(&a.path),
        header_store: a.header_store.clone(),
    };
    let loc = volume.locate()?;
    let Some(sock) = daemon_socket(&loc)? else {
        return Err(CliError::new(
            exit::NOT_MOUNTED,
            format!("{} is not mounted", loc.cipherdir().display()),
        ));
    };
    let reply = send(&sock, &Request::Status)?;
    let d = &reply.data;
    if a.json {
        println!("{d}");
        return Ok(());
    }
    let s = |k: &str| d[k].as_str().unwrap_or("?").to_owned();
    let n = |k: &str| d[k].as_u64().unwrap_or(0);
    println!("cipherdir:      {}", s("cipherdir"));
    println!(
        "mounted on:     {}{}",
        s("mountpoint"),
        if d["read_only"].as_bool() == Some(true) {
            " (read-only)"
        } else {
            ""
        }
    );
    println!("daemon pid:     {}", n("pid"));
    println!("uptime:         {}", duration_text(n("uptime_secs")));
    println!("open files:     {}", d["open_files"].as_i64().unwrap_or(0));
    println!("key rows:       {}", n("key_rows"));
    println!("KEK generation: {}", n("kek_generation"));
    match d["rotation"].as_object() {
        None => println!("rotation:       none"),
        Some(r) => {
            let done = r.get("done").and_then(|v| v.as_u64()).unwrap_or(0);
            let total = r.get("total").and_then(|v| v.as_u64()).unwrap_or(0);
            let state = r.get("state").and_then(|v| v.as_str()).unwrap_or("running");
            let pct = if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            };
            println!("rotation:       {state}: {done} of {total} key rows re-wrapped ({pct:.1} %)");
            if let Some(e) = r.get("error").and_then(|v| v.as_str()) {
                println!("rotation error: {e}");
            }
        }
    }
    println!("control socket: {}", sock.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(duration_text(5), "5s");
        assert_eq!(duration_text(65), "1m 5s");
        assert_eq!(duration_text(3 * 3600 + 61), "3h 1m 1s");
        assert_eq!(duration_text(2 * 86_400 + 3600), "2d 1h 0m");
    }
}
