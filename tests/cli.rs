//! CLI transcripts: the real `cofferfs` binary with the password piped on stdin or given by
//! `--passfile`/`--extpass`, checking stdout, stderr and the exit status (src/cli/exit.rs).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::mount::CHEAP_KDF;

const PASSWORD: &str = "Tr0ub4dor&3-cli-test";

/// Exit codes from src/cli/exit.rs (never renumbered).
const OK: i32 = 0;
const USAGE: i32 = 2;
const CIPHERDIR: i32 = 6;
const HEADER_STORE: i32 = 9;
const PASSWORD_INPUT: i32 = 10;

/// One finished run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "wrong exit status: {self:#?}");
        self
    }

    fn assert_no_secret(&self) -> &Self {
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            assert!(!text.contains(PASSWORD), "password in {name}: {self:#?}");
        }
        self
    }

    /// The value of an `info` line such as `chunk size:      4096`.
    fn field(&self, key: &str) -> &str {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key:?} line in {self:#?}"))
    }
}

/// Runs `cofferfs args…` with `stdin` piped in (an empty pipe when `None`).
fn cofferfs(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cofferfs"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cofferfs");
    {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        if let Some(s) = stdin {
            // A run that fails before reading its password closes the pipe early.
            match pipe.write_all(s.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
                _ => {}
            }
        }
    }
    let out = child.wait_with_output().expect("wait for cofferfs");
    Run {
        code: out.status.code().expect("cofferfs was killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `cofferfs init DIR --cheap-kdf extra…` with the password piped on stdin.
fn init(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["init", path_str(dir)];
    args.extend_from_slice(&CHEAP_KDF);
    args.extend_from_slice(extra);
    cofferfs(&args, Some(&format!("{PASSWORD}\n")))
}

fn info(dir: &Path) -> Run {
    cofferfs(&["info", path_str(dir)], None)
}

/// A temp dir and a fresh volume in its `c` subdirectory.
fn new_volume(extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    init(&c, extra).assert_code(OK).assert_no_secret();
    (tmp, c)
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(files_under(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn init_then_info_shows_the_volume_and_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    let run = init(&c, &[]);
    run.assert_code(OK).assert_no_secret();
    assert!(
        run.stdout.starts_with(&format!(
            "Created cofferfs volume in {} (chunk size 4096, encrypted names).\n",
            c.display()
        )),
        "{run:#?}"
    );
    // Weak test parameters are allowed but warned about.
    assert!(
        run.stderr.contains("warning: Argon2id memory below 8 MiB"),
        "{run:#?}"
    );

    let run = info(&c);
    run.assert_code(OK).assert_no_secret();
    assert_eq!(run.stderr, "");
    assert_eq!(run.field("cipherdir"), c.display().to_string());
    assert_eq!(
        run.field("header store"),
        c.join("cofferfs.db").display().to_string()
    );
    assert_eq!(run.field("format version"), "3");
    assert_eq!(run.field("chunk size"), "4096");
    assert_eq!(run.field("names"), "encrypted (AES-SIV)");
    assert_eq!(run.field("kek generation"), "1");
    assert_eq!(run.field("files"), "0");
    assert_eq!(run.field("key slots"), "1");
    let id = run.field("volume id");
    assert_eq!(id.len(), 32, "volume id is 16 bytes of hex: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let slot = run
        .stdout
        .lines()
        .find(|l| l.starts_with("  slot 0: "))
        .unwrap();
    assert!(
        slot.contains("\"password\", argon2id m=1024 KiB t=1 p=1, created 20"),
        "{slot}"
    );
    // Ten fields and exactly one slot line; no key bytes anywhere
    // (the only long hex string is the volume id).
    assert_eq!(run.stdout.lines().count(), 11, "{run:#?}");
    for word in run.stdout.split(|c: char| !c.is_ascii_hexdigit()) {
        assert!(word.len() < 32 || word == id, "hex blob {word} in {run:#?}");
    }
}

#[test]
fn init_records_chunk_size_and_plaintext_names() {
    let (_tmp, c) = new_volume(&["--chunk-size", "65536", "--plaintext-names"]);
    let run = info(&c);
    run.assert_code(OK).assert_no_secret();
    assert_eq!(run.field("chunk size"), "65536");
    assert_eq!(run.field("names"), "plaintext");
}

#[test]
fn init_records_the_default_argon2_parameters() {
    // The one test with the real defaults (a few seconds in a debug build).
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    let run = cofferfs(&["init", path_str(&c)], Some(&format!("{PASSWORD}\n")));
    run.assert_code(OK).assert_no_secret();
    assert_eq!(run.stderr, "", "no weak-parameter warning for the defaults");
    let run = info(&c);
    run.assert_code(OK);
    assert!(
        run.stdout.contains("argon2id m=65536 KiB t=3 p=4"),
        "{run:#?}"
    );
}

#[test]
fn invalid_chunk_size_is_refused_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    let run = init(&c, &["--chunk-size", "5000"]);
    run.assert_code(USAGE).assert_no_secret();
    assert_eq!(
        run.stderr.lines().last().unwrap(),
        "cofferfs: invalid chunk size 5000: must be a power of two from 4096 to 1048576",
        "{run:#?}"
    );
    assert_eq!(run.stdout, "");
    assert!(!c.exists(), "no cipherdir is created for a bad chunk size");

    // Not a number at all is clap's usage error.
    let run = init(&c, &["--chunk-size", "big"]);
    run.assert_code(2);
    assert!(run.stderr.contains("invalid value 'big'"), "{run:#?}");
}

#[test]
fn bad_argon2_parameters_are_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    let run = cofferfs(
        &["init", path_str(&c), "--argon2-time", "0"],
        Some(&format!("{PASSWORD}\n")),
    );
    run.assert_code(USAGE).assert_no_secret();
    assert!(run.stderr.contains("passes outside 1..=64"), "{run:#?}");
    assert!(!c.exists());
}

#[test]
fn init_into_a_non_empty_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    std::fs::create_dir(&c).unwrap();
    std::fs::write(c.join("precious.txt"), "keep me").unwrap();
    let run = init(&c, &[]);
    run.assert_code(CIPHERDIR).assert_no_secret();
    assert!(run.stderr.contains("not empty"), "{run:#?}");
    assert_eq!(run.stdout, "");
    assert_eq!(std::fs::read(c.join("precious.txt")).unwrap(), b"keep me");
    assert!(!c.join("cofferfs.db").exists());

    // A second init over an existing volume is the same error.
    let (_tmp, vol) = new_volume(&[]);
    init(&vol, &[]).assert_code(CIPHERDIR);
}

#[test]
fn info_on_something_that_is_not_a_cipherdir() {
    let tmp = tempfile::tempdir().unwrap();
    let run = info(tmp.path());
    run.assert_code(CIPHERDIR);
    assert!(
        run.stderr.contains("is not a cofferfs cipherdir"),
        "{run:#?}"
    );
    assert_eq!(run.stdout, "");
    info(&tmp.path().join("missing")).assert_code(CIPHERDIR);
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    info(&file).assert_code(CIPHERDIR);
}

#[test]
fn info_on_a_garbage_header_store_says_corrupt() {
    let (_tmp, c) = new_volume(&[]);
    let db = c.join("cofferfs.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    let run = info(&c);
    run.assert_code(HEADER_STORE);
    assert!(run.stderr.contains("corrupt"), "{run:#?}");
    assert_eq!(run.stdout, "");

    // A truncated (empty) store has no schema: corrupt too.
    std::fs::write(&db, b"").unwrap();
    let run = info(&c);
    run.assert_code(HEADER_STORE);
    assert!(run.stderr.contains("corrupt"), "{run:#?}");
}

#[test]
fn info_on_a_store_from_a_newer_cofferfs_says_newer() {
    let (_tmp, c) = new_volume(&[]);
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let run = info(&c);
    run.assert_code(HEADER_STORE);
    assert!(run.stderr.contains("newer"), "{run:#?}");
    assert!(run.stderr.contains("99"), "{run:#?}");
    assert_eq!(run.stdout, "");
}

#[test]
fn empty_password_on_stdin_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    for stdin in ["\n", "", "\r\n"] {
        let mut args = vec!["init", path_str(&c)];
        args.extend_from_slice(&CHEAP_KDF);
        let run = cofferfs(&args, Some(stdin));
        run.assert_code(PASSWORD_INPUT);
        assert_eq!(
            run.stderr.lines().last().unwrap(),
            "cofferfs: the password is empty"
        );
        assert_eq!(run.stdout, "");
        assert!(!c.exists(), "nothing is created without a password");
    }
}

#[test]
fn missing_passfile_is_a_password_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    let missing = tmp.path().join("no-such-passfile");
    let run = init(&c, &["--passfile", path_str(&missing)]);
    run.assert_code(PASSWORD_INPUT);
    assert!(run.stderr.contains("cannot read the password"), "{run:#?}");
    assert!(!c.exists());
}

#[test]
fn passfile_gives_the_first_line() {
    let tmp = tempfile::tempdir().unwrap();
    let pf = tmp.path().join("pw");
    std::fs::write(&pf, format!("{PASSWORD}\nignored second line\n")).unwrap();
    let c = tmp.path().join("c");
    // Stdin is ignored when --passfile is given.
    let mut args = vec!["init", path_str(&c), "--passfile", path_str(&pf)];
    args.extend_from_slice(&CHEAP_KDF);
    let run = cofferfs(&args, Some("not the password\n"));
    run.assert_code(OK).assert_no_secret();
    let db = std::fs::read(c.join("cofferfs.db")).unwrap();
    assert!(!contains(&db, PASSWORD.as_bytes()));
    assert!(!contains(&db, b"ignored second line"));
    assert!(!contains(&db, b"not the password"));
}

#[test]
fn failing_extpass_is_a_password_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    let run = init(&c, &["--extpass", "exit 1"]);
    run.assert_code(PASSWORD_INPUT);
    assert!(run.stderr.contains("--extpass program failed"), "{run:#?}");
    assert!(!c.exists());

    // An extpass that prints nothing gives an empty password.
    init(&c, &["--extpass", "true"]).assert_code(PASSWORD_INPUT);
    assert!(!c.exists());
}

#[test]
fn extpass_and_passfile_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    let run = init(&c, &["--extpass", "echo x", "--passfile", "/dev/null"]);
    run.assert_code(2);
    assert!(run.stderr.contains("cannot be used with"), "{run:#?}");
}

#[test]
fn password_is_never_printed_nor_stored_in_the_cipherdir() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("stdin", vec![]),
        (
            "extpass",
            vec!["--extpass", "printf '%s\\n' \"$COFFER_TEST_PW\""],
        ),
    ] {
        let c = tmp.path().join(name);
        let mut args = vec!["init", path_str(&c)];
        args.extend_from_slice(&CHEAP_KDF);
        args.extend_from_slice(&extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cofferfs"));
        cmd.args(&args)
            .env("COFFER_TEST_PW", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        for stream in [&out.stdout, &out.stderr] {
            assert!(!contains(stream, PASSWORD.as_bytes()), "{name}: {out:?}");
        }
        let files = files_under(&c);
        assert!(
            files.iter().any(|f| f.ends_with("cofferfs.db")),
            "{name}: {files:?}"
        );
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                !contains(&bytes, PASSWORD.as_bytes()),
                "{name}: password bytes in {}",
                f.display()
            );
        }
        info(&c).assert_code(OK).assert_no_secret();
    }
}

#[test]
fn info_leaves_no_wal_or_shm_behind() {
    //! Regression: a read-only SQLite open in WAL mode left `-wal` and `-shm` files in the
    //! cipherdir, which rsync would then copy.
    let (_tmp, c) = new_volume(&[]);
    info(&c).assert_code(OK);
    let mut names: Vec<String> = std::fs::read_dir(&c)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".cofferfs.dirid", "cofferfs.db", "cofferfs.volume"]);
}

/// The number after `key` in `line` (e.g. `seal 1980 MB/s` → 1980 for key `seal`).
fn number_after(line: &str, key: &str) -> f64 {
    let rest = line
        .split_once(&format!("{key} "))
        .unwrap_or_else(|| panic!("no {key:?} in {line:?}"))
        .1;
    let n: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    n.parse()
        .unwrap_or_else(|_| panic!("no number after {key:?} in {line:?}"))
}

#[test]
fn speed_quick_prints_one_line_per_measurement_with_a_volume_slot() {
    let (_tmp, c) = new_volume(&[]);
    let started = std::time::Instant::now();
    let run = cofferfs(&["speed", "--quick", path_str(&c)], None);
    run.assert_code(OK);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "--quick took {:?}",
        started.elapsed()
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{run:#?}");
    assert!(lines[0].starts_with("cpu: "), "{run:#?}");
    #[cfg(target_arch = "x86_64")]
    assert!(lines[0].contains("AES-NI ") && lines[0].contains("PCLMULQDQ "));
    for (line, size) in lines[1..4].iter().zip(["4 KiB", "64 KiB", "1 MiB"]) {
        assert!(
            line.starts_with(&format!("aes-256-gcm {size} chunks: ")),
            "{line}"
        );
        assert!(number_after(line, "seal") > 0.0 && number_after(line, "open") > 0.0);
    }
    assert!(lines[4].starts_with("aes-siv names"), "{}", lines[4]);
    assert!(number_after(lines[4], "encrypt") > 0.0 && number_after(lines[4], "decrypt") > 0.0);
    assert!(
        lines[5].starts_with("argon2id default (m=65536 KiB t=3 p=4): "),
        "{}",
        lines[5]
    );
    assert!(
        lines[6].starts_with("argon2id slot 0 \"password\" (m=1024 KiB t=1 p=1): "),
        "{}",
        lines[6]
    );
    assert!(lines[5].ends_with(" s") && lines[6].ends_with(" s"));
}

#[test]
fn speed_refuses_what_is_not_a_cipherdir_and_a_bad_duration() {
    let tmp = tempfile::tempdir().unwrap();
    let run = cofferfs(&["speed", "--quick", path_str(tmp.path())], None);
    run.assert_code(CIPHERDIR);
    assert!(run.stdout.is_empty(), "measured before checking: {run:#?}");
    cofferfs(&["speed", "--seconds", "0"], None).assert_code(USAGE);
}
