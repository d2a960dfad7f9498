//! The HTTP side: one `ureq` agent (rustls, so no OpenSSL to link) with the time-out of the
//! configuration, and the four Transit calls cofferfs makes. Vault's answers are classified
//! into [`TransitError`] cases from the status and its `errors` list.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::config::{Auth, Config};
use super::{Result, TransitError};

/// Largest answer read from Vault (they are a few hundred bytes).
const MAX_BODY: u64 = 1024 * 1024;

/// A Transit client for one command: the configuration and, once logged in, the token.
pub struct Client {
    agent: ureq::Agent,
    addr: String,
    namespace: Option<String>,
    auth: Auth,
    /// Requests sent, for the tests' and `speed`'s count of calls per unlock.
    calls: std::cell::Cell<u32>,
}

/// What a Transit key reports about itself (`GET <mount>/keys/<key>`).
#[derive(Debug, Clone, Deserialize)]
pub struct KeyInfo {
    /// The newest version: what `encrypt` and `rewrap` use.
    pub latest_version: u32,
    /// Ciphertexts of older versions are refused.
    pub min_decryption_version: u32,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct CiphertextData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct PlaintextData {
    plaintext: String,
}

#[derive(Deserialize)]
struct LoginAnswer {
    auth: LoginAuth,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl Client {
    /// A client for `config`: builds the TLS roots (the built-in ones, or `VAULT_CACERT`).
    pub fn new(config: Config) -> Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &config.cacert {
            let pem = std::fs::read(path).map_err(|e| {
                TransitError::Config(format!("VAULT_CACERT {}: {e}", path.display()))
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(TransitError::Config(format!(
                    "VAULT_CACERT {}: no PEM certificate in it",
                    path.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        // A proxy from the environment is used as the `vault` CLI uses it, except to this
        // machine (Go's ProxyFromEnvironment never proxies loopback either).
        let proxy = if super::config::addr_is_loopback(&config.addr) {
            None
        } else {
            ureq::Proxy::try_from_env()
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(proxy)
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Client {
            agent,
            addr: config.addr,
            namespace: config.namespace,
            auth: config.auth,
            calls: std::cell::Cell::new(0),
        })
    }

    /// The server address requests go to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How many requests this client has sent.
    pub fn calls(&self) -> u32 {
        self.calls.get()
    }

    /// Encrypts `plaintext` with key `key` of the Transit engine at `mount`; returns the
    /// `vault:vN:…` ciphertext.
    pub fn encrypt(&mut self, mount: &str, key: &str, plaintext: &[u8]) -> Result<String> {
        let b64 = Zeroizing::new(B64.encode(plaintext));
        let body = serde_json::json!({ "plaintext": b64.as_str() });
        let body = Zeroizing::new(body.to_string());
        let what = format!("{mount}/encrypt/{key}");
        let answer = self.post(&what, &body, key)?;
        let data: Envelope<CiphertextData> = parse(&answer, &what)?;
        Ok(data.data.ciphertext)
    }

    /// Decrypts a ciphertext of key `key`; the plaintext comes back in a wiped buffer.
    pub fn decrypt(
        &mut self,
        mount: &str,
        key: &str,
        ciphertext: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let body = serde_json::json!({ "ciphertext": ciphertext }).to_string();
        let what = format!("{mount}/decrypt/{key}");
        let answer = self.post(&what, &body, key)?;
        let data: Envelope<PlaintextData> = parse(&answer, &what)?;
        let b64 = Zeroizing::new(data.data.plaintext);
        B64.decode(b64.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| TransitError::Other(format!("{what}: the plaintext is not base64")))
    }

    /// Re-encrypts a ciphertext under the newest version of `key` inside Vault (the
    /// plaintext never leaves it).
    pub fn rewrap(&mut self, mount: &str, key: &str, ciphertext: &str) -> Result<String> {
        let body = serde_json::json!({ "ciphertext": ciphertext }).to_string();
        let what = format!("{mount}/rewrap/{key}");
        let answer = self.post(&what, &body, key)?;
        let data: Envelope<CiphertextData> = parse(&answer, &what)?;
        Ok(data.data.ciphertext)
    }

    /// The key's versions, or `None` when the token may not read them (a token that may
    /// only encrypt or decrypt). A missing key is [`TransitError::KeyMissing`].
    pub fn key_info(&mut self, mount: &str, key: &str) -> Result<Option<KeyInfo>> {
        let what = format!("{mount}/keys/{key}");
        match self.request("GET", &what, None, key) {
            Ok(answer) => Ok(Some(parse::<Envelope<KeyInfo>>(&answer, &what)?.data)),
            Err(TransitError::Denied(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn post(&mut self, path: &str, body: &str, key: &str) -> Result<Zeroizing<String>> {
        self.request("POST", path, Some(body), key)
    }

    /// Logs in with AppRole if that is the configured auth; returns the token to send.
    fn token(&mut self) -> Result<Zeroizing<String>> {
        match &self.auth {
            Auth::Token(t) => Ok(t.clone()),
            Auth::None => Err(TransitError::Denied(
                "no token: set VAULT_TOKEN (or BAO_TOKEN), run `bao login`, or give \
                 --vault-role-id and --vault-secret-id-file"
                    .into(),
            )),
            Auth::AppRole { role_id, secret_id } => {
                let body = Zeroizing::new(
                    serde_json::json!({ "role_id": role_id, "secret_id": secret_id.as_str() })
                        .to_string(),
                );
                // A wrong role or secret id is a 400 here: a refused login all the same.
                let answer = self
                    .send("POST", "auth/approle/login", Some(&body), None, "")
                    .map_err(|e| match e {
                        TransitError::Other(why) => TransitError::Denied(why),
                        e => e,
                    })?;
                let login: LoginAnswer = parse(&answer, "auth/approle/login")?;
                let token = Zeroizing::new(login.auth.client_token);
                self.auth = Auth::Token(token.clone());
                Ok(token)
            }
        }
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        key: &str,
    ) -> Result<Zeroizing<String>> {
        let token = self.token()?;
        self.send(method, path, body, Some(&token), key)
    }

    /// One request to `/v1/<path>`; a non-2xx answer becomes the matching error.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
        key: &str,
    ) -> Result<Zeroizing<String>> {
        let url = format!("{}/v1/{path}", self.addr);
        self.calls.set(self.calls.get() + 1);
        let unreachable = |e: ureq::Error| TransitError::Unreachable {
            addr: self.addr.clone(),
            why: match e {
                ureq::Error::Timeout(_) => "no answer in time (VAULT_CLIENT_TIMEOUT)".to_owned(),
                e => e.to_string(),
            },
        };
        let mut response = match (method, body) {
            ("POST", Some(body)) => {
                let mut req = self
                    .agent
                    .post(&url)
                    .header("X-Vault-Request", "true")
                    .header("Content-Type", "application/json");
                if let Some(t) = token {
                    req = req.header("X-Vault-Token", t);
                }
                if let Some(ns) = &self.namespace {
                    req = req.header("X-Vault-Namespace", ns);
                }
                req.send(body.as_bytes()).map_err(unreachable)?
            }
            _ => {
                let mut req = self.agent.get(&url).header("X-Vault-Request", "true");
                if let Some(t) = token {
                    req = req.header("X-Vault-Token", t);
                }
                if let Some(ns) = &self.namespace {
                    req = req.header("X-Vault-Namespace", ns);
                }
                req.call().map_err(unreachable)?
            }
        };
        let status = response.status().as_u16();
        let text = Zeroizing::new(
            response
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_string()
                .map_err(unreachable)?,
        );
        if (200..300).contains(&status) {
            return Ok(text);
        }
        // Vault's messages span lines ("1 error occurred:\n\t* …"): one line for ours.
        let errors = serde_json::from_str::<ErrorBody>(&text)
            .unwrap_or_default()
            .errors
            .join("; ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Err(classify(status, &errors, path, key, &self.addr))
    }
}

/// Maps a refused request to its case.
fn classify(status: u16, errors: &str, path: &str, key: &str, addr: &str) -> TransitError {
    let lower = errors.to_ascii_lowercase();
    let said = if errors.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {errors}")
    };
    if lower.contains("sealed") {
        return TransitError::Sealed(addr.to_owned());
    }
    match status {
        401 | 403 => TransitError::Denied(format!("{path}: {said}")),
        _ if lower.contains("too old") || lower.contains("disallowed by policy") => {
            TransitError::TooOld(said)
        }
        404 => TransitError::KeyMissing(format!("{key:?} ({path}: {said})")),
        400 if lower.contains("key not found") || lower.contains("no existing key") => {
            TransitError::KeyMissing(format!("{key:?} ({path}: {said})"))
        }
        503 => TransitError::Unreachable {
            addr: addr.to_owned(),
            why: said,
        },
        _ => TransitError::Other(format!("{path}: {said}")),
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| TransitError::Other(format!("{what}: unexpected answer ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified() {
        let c = |s, e| classify(s, e, "transit/decrypt/k", "k", "http://127.0.0.1:1");
        assert!(matches!(c(503, "Vault is sealed"), TransitError::Sealed(_)));
        assert!(matches!(
            c(403, "permission denied"),
            TransitError::Denied(_)
        ));
        assert!(matches!(
            c(400, "encryption key not found"),
            TransitError::KeyMissing(_)
        ));
        assert!(matches!(
            c(
                400,
                "ciphertext or signature version is disallowed by policy (too old)"
            ),
            TransitError::TooOld(_)
        ));
        assert!(matches!(c(500, "boom"), TransitError::Other(_)));
    }
}
