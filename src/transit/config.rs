//! Where Vault is and who we are to it, read as the `vault` and `bao` command lines read it:
//! `VAULT_ADDR` (or `BAO_ADDR`, default `https://127.0.0.1:8200`), `VAULT_TOKEN` (or
//! `BAO_TOKEN`, else the token helper's file `~/.vault-token`), `VAULT_CACERT` (or
//! `BAO_CACERT`), `VAULT_NAMESPACE` (or `BAO_NAMESPACE`), `VAULT_CLIENT_TIMEOUT` (seconds,
//! default 10). An AppRole login (role id and a secret-id file) replaces the token.

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{Result, TransitError};

/// Default time-out of one request, as the `vault` CLI's `VAULT_CLIENT_TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The address used when neither `VAULT_ADDR` nor `BAO_ADDR` is set (the CLI's default).
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:8200";

/// How to log in.
pub enum Auth {
    /// A token: `VAULT_TOKEN`, `BAO_TOKEN` or `~/.vault-token`.
    Token(Zeroizing<String>),
    /// AppRole: the role id and the secret id read from a file; exchanged for a token by
    /// the first request.
    AppRole {
        /// The role id (not a secret on its own).
        role_id: String,
        /// The secret id.
        secret_id: Zeroizing<String>,
    },
    /// Nothing was found: every request is refused with a message that says what to set.
    None,
}

/// Connection settings for one command.
pub struct Config {
    /// `scheme://host[:port]`, without a trailing slash.
    pub addr: String,
    /// PEM file of the CA that signed the server's certificate (else the built-in roots).
    pub cacert: Option<PathBuf>,
    /// Enterprise/OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Time-out of each request, connection included.
    pub timeout: Duration,
    /// How to authenticate.
    pub auth: Auth,
}

/// AppRole credentials from the command line: the secret id only ever from a file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AppRoleArgs {
    /// Log in to Vault with AppRole, this role id (instead of VAULT_TOKEN / ~/.vault-token).
    #[arg(long, value_name = "ID", requires = "vault_secret_id_file")]
    pub vault_role_id: Option<String>,
    /// File whose first line is the AppRole secret id.
    #[arg(long, value_name = "FILE", requires = "vault_role_id")]
    pub vault_secret_id_file: Option<PathBuf>,
}

fn env2(a: &str, b: &str) -> Option<String> {
    std::env::var(a)
        .ok()
        .or_else(|| std::env::var(b).ok())
        .filter(|s| !s.is_empty())
}

impl Config {
    /// Reads the environment (and `~/.vault-token`, or the AppRole secret-id file).
    pub fn from_env(approle: &AppRoleArgs) -> Result<Self> {
        let addr = env2("VAULT_ADDR", "BAO_ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let addr = addr.trim_end_matches('/').to_owned();
        check_addr(&addr)?;
        let timeout = match env2("VAULT_CLIENT_TIMEOUT", "BAO_CLIENT_TIMEOUT") {
            Some(s) => parse_timeout(&s)?,
            None => DEFAULT_TIMEOUT,
        };
        let auth = match (&approle.vault_role_id, &approle.vault_secret_id_file) {
            (Some(role_id), Some(file)) => Auth::AppRole {
                role_id: role_id.clone(),
                secret_id: read_first_line(file, "AppRole secret-id file")?,
            },
            _ => token_from_env()?,
        };
        Ok(Config {
            addr,
            cacert: env2("VAULT_CACERT", "BAO_CACERT").map(PathBuf::from),
            namespace: env2("VAULT_NAMESPACE", "BAO_NAMESPACE"),
            timeout,
            auth,
        })
    }
}

/// `VAULT_TOKEN`, `BAO_TOKEN`, then `~/.vault-token` (what `vault login` writes).
fn token_from_env() -> Result<Auth> {
    for var in ["VAULT_TOKEN", "BAO_TOKEN"] {
        if let Some(os) = std::env::var_os(var) {
            let t = Zeroizing::new(os.to_string_lossy().trim().to_owned());
            drop(os);
            if !t.is_empty() {
                return Ok(Auth::Token(t));
            }
        }
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(Auth::None);
    };
    let file = PathBuf::from(home).join(".vault-token");
    if !file.exists() {
        return Ok(Auth::None);
    }
    Ok(Auth::Token(read_first_line(&file, "token file")?))
}

/// The largest token or secret-id file read (Vault tokens are under 200 bytes).
const SECRET_FILE_MAX_LEN: u64 = 64 * 1024;

/// The first line of a small secret file, in a wiped buffer.
fn read_first_line(path: &std::path::Path, what: &str) -> Result<Zeroizing<String>> {
    let fail = |e: std::io::Error| TransitError::Config(format!("{what} {}: {e}", path.display()));
    let bytes = crate::sys::read_secret(
        &mut std::fs::File::open(path).map_err(fail)?,
        SECRET_FILE_MAX_LEN,
    )
    .map_err(fail)?;
    if bytes.len() as u64 > SECRET_FILE_MAX_LEN {
        return Err(TransitError::Config(format!(
            "{what} {}: larger than {SECRET_FILE_MAX_LEN} bytes",
            path.display()
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| TransitError::Config(format!("{what} {}: not UTF-8", path.display())))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(TransitError::Config(format!(
            "{what} {} is empty",
            path.display()
        )));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

fn parse_timeout(s: &str) -> Result<Duration> {
    let secs = s.trim().trim_end_matches('s');
    match secs.parse::<u64>() {
        Ok(n) if (1..=600).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(TransitError::Config(format!(
            "VAULT_CLIENT_TIMEOUT {s:?}: a number of seconds from 1 to 600"
        ))),
    }
}

/// Accepts `https://` anywhere and `http://` only to a loopback address: a token and the
/// slot key must never cross a network in clear.
pub fn check_addr(addr: &str) -> Result<()> {
    let bad = |why: &str| TransitError::Config(format!("address {addr:?}: {why}"));
    let (scheme, rest) = addr
        .split_once("://")
        .ok_or_else(|| bad("not scheme://host[:port]"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("no host, or credentials in it"));
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(authority) => Ok(()),
        "http" => Err(bad(
            "plain http only to a loopback address (127.0.0.0/8, [::1], localhost); use https",
        )),
        _ => Err(bad(
            "the scheme must be https (or http to a loopback address)",
        )),
    }
}

/// True when `addr` (`scheme://host[:port]…`) names this machine.
pub fn addr_is_loopback(addr: &str) -> bool {
    addr.split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .is_some_and(is_loopback)
}

/// True when `host[:port]` names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://vault.example:8200",
            "http://127.0.0.1:8200",
            "http://127.8.0.1",
            "http://[::1]:8200",
            "http://localhost:8200",
        ] {
            assert!(check_addr(ok).is_ok(), "{ok}");
            assert_eq!(addr_is_loopback(ok), ok.starts_with("http://"), "{ok}");
        }
        for bad in [
            "http://vault.example:8200",
            "http://10.0.0.1:8200",
            "http://127.0.0.1.evil.example",
            "ftp://127.0.0.1",
            "127.0.0.1:8200",
            "http://user@127.0.0.1",
        ] {
            assert!(check_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(parse_timeout("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_timeout("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("x").is_err());
    }
}
