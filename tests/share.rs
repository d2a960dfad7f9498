//! `cofferfs share` / `open-share` / `shares list` with real programs: files made through a
//! real mount, keys made by `age-keygen` (and `ssh-keygen`), shares opened by Debian's
//! `age -d` and by `cofferfs open-share`; the plaintext compared byte for byte; tampered,
//! truncated, foreign and re-encrypted ciphertexts refused (45) with nothing left under OUT's
//! name; wrong identities and tampered shares refused (46); and the payload checked, against
//! keys unwrapped from the store, to hold the shared file's FEK and no other key.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cofferfs::crypto::wrap::{unwrap_fek, unwrap_name_key_bound};
use cofferfs::format::{FileHeader, FileId, HEADER_LEN};
use cofferfs::keystore::HeaderStore;
use cofferfs::share::payload;
use common::damage::{cipher_path, flip_byte};
use common::mount::{Mounted, PASSWORD, cofferfs};

const CHUNK: usize = 4096;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + i / 251) % 256) as u8 ^ seed)
        .collect()
}

/// A new age key pair made by `age-keygen`: (identity file, public key).
fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (apt-get install age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    (path, public)
}

/// Runs `age -d -i IDENTITY SHARE`; returns (success, stdout bytes, stderr).
fn age_decrypt(identity: &Path, share: &Path) -> (bool, Vec<u8>, String) {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(share)
        .output()
        .expect("age (apt-get install age)");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cofferfs share CIPHERDIR PATHS --to R... -o SHARE --print-cipher-path EXTRA`; returns the
/// ciphertext paths it printed.
fn share(
    cipherdir: &Path,
    paths: &[&str],
    to: &[&str],
    out: &Path,
    extra: &[&str],
) -> Vec<PathBuf> {
    let mut args = vec!["share", cipherdir.to_str().unwrap()];
    args.extend_from_slice(paths);
    for r in to {
        args.extend(["--to", r]);
    }
    args.extend(["-o", out.to_str().unwrap(), "--print-cipher-path"]);
    args.extend_from_slice(extra);
    let (code, stdout, err) = cofferfs(&args);
    assert_eq!(code, 0, "{stdout}{err}");
    let lines: Vec<&str> = stdout.lines().collect();
    lines[lines.len() - paths.len()..]
        .iter()
        .map(PathBuf::from)
        .collect()
}

fn open_share(
    share: &Path,
    identity: &Path,
    ciphers: &[&Path],
    out: &Path,
) -> (i32, String, String) {
    let mut args = vec![
        "open-share".to_owned(),
        share.to_str().unwrap().to_owned(),
        "--identity".to_owned(),
        identity.to_str().unwrap().to_owned(),
    ];
    args.extend(ciphers.iter().map(|c| c.to_str().unwrap().to_owned()));
    args.extend(["-o".to_owned(), out.to_str().unwrap().to_owned()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // No password: open-share must not read one (stdin is empty).
    common::mount::run_with_stdin(&refs, "")
}

/// Names in `dir` (to see that nothing, not even a temporary file, was left).
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The KEK, the name key and the FEK of every file id, unwrapped from the store.
fn keys_from_store(cipherdir: &Path, ids: &[FileId]) -> ([u8; 32], [u8; 64], Vec<[u8; 32]>) {
    let store = HeaderStore::open(&cipherdir.join("cofferfs.db"), true).unwrap();
    let (_, kek) = store.unlock(PASSWORD.as_bytes(), None).unwrap();
    let params = store.params().unwrap();
    let nk = unwrap_name_key_bound(&kek, &params.wrapped_name_key, &params.binding()).unwrap();
    let feks = ids
        .iter()
        .map(|id| {
            let (wrapped, _) = store.file_key(id).unwrap().unwrap();
            *unwrap_fek(&kek, &wrapped, id).unwrap().expose()
        })
        .collect();
    let mut name_key = [0u8; 64];
    name_key[..nk.expose().len()].copy_from_slice(nk.expose());
    (*kek.expose(), name_key, feks)
}

fn file_id_of(blob: &Path) -> FileId {
    let b = std::fs::read(blob).unwrap();
    FileHeader::decode(&b[..HEADER_LEN]).unwrap().file_id
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn shares_open_with_age_and_open_share_byte_for_byte_and_hold_only_their_keys() {
    let mut m = Mounted::new();
    let sizes: &[(&str, usize)] = &[
        ("zero", 0),
        ("one", 1),
        ("chunk-1", CHUNK - 1),
        ("chunk", CHUNK),
        ("chunk+1", CHUNK + 1),
        ("big", 3 * 1024 * 1024 + 1),
    ];
    std::fs::create_dir(m.path("d")).unwrap();
    let mut want = Vec::new();
    for (k, (name, len)) in sizes.iter().enumerate() {
        let data = pattern(*len, k as u8);
        std::fs::write(m.path(&format!("d/{name}")), &data).unwrap();
        want.push((format!("d/{name}"), data));
    }
    // A sparse file: a hole, 5 bytes in the middle, a hole to the end.
    {
        let f = std::fs::File::create(m.path("d/sparse")).unwrap();
        f.set_len(1024 * 1024 + 5).unwrap();
        f.write_all_at(b"hello", 600_000).unwrap();
        let mut data = vec![0u8; 1024 * 1024 + 5];
        data[600_000..600_005].copy_from_slice(b"hello");
        want.push(("d/sparse".into(), data));
    }
    std::fs::write(m.path("unshared"), b"not for them").unwrap();
    m.unmount();

    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "alice.key");
    let paths: Vec<String> = want.iter().map(|(p, _)| format!("/{p}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let share_file = tmp.path().join("all.age");
    let ciphers = share(&m.cipherdir, &refs, &[&public], &share_file, &[]);
    assert_eq!(ciphers.len(), want.len());
    for ((p, _), c) in want.iter().zip(&ciphers) {
        assert_eq!(c, &cipher_path(&m.cipherdir, &format!("/{p}")), "{p}");
    }

    // Debian's age opens it; the payload is the documented format, with this volume's keys.
    let (ok, plain, err) = age_decrypt(&id, &share_file);
    assert!(ok, "{err}");
    assert_eq!(&plain[..8], b"CFSSHARE");
    let entries = payload::decode(&plain).unwrap();
    assert_eq!(entries.len(), want.len());
    let mut ids: Vec<FileId> = ciphers
        .iter()
        .filter(|c| std::fs::metadata(c).unwrap().len() > 0)
        .map(|c| file_id_of(c))
        .collect();
    let shared = ids.len();
    let other = file_id_of(&cipher_path(&m.cipherdir, "/unshared"));
    ids.push(other);
    let (kek, name_key, feks) = keys_from_store(&m.cipherdir, &ids);
    for (k, fek) in feks[..shared].iter().enumerate() {
        assert!(contains(&plain, fek), "FEK of shared file {k} missing");
        let e = entries.iter().find(|e| e.file_id == Some(ids[k])).unwrap();
        assert_eq!(e.fek.as_ref().unwrap().expose(), fek);
    }
    assert!(
        !contains(&plain, &feks[shared]),
        "another file's FEK is in the share"
    );
    assert!(!contains(&plain, &kek), "the KEK is in the share");
    assert!(
        !contains(&plain, &name_key[..32]),
        "the name key is in the share"
    );
    assert!(
        !contains(&plain, &name_key[32..]),
        "the name key is in the share"
    );
    assert!(entries.iter().all(|e| e.chunk_len == CHUNK as u32));
    let big = entries
        .iter()
        .find(|e| e.name.as_ref().unwrap().path == Path::new("d/big"))
        .unwrap();
    assert_eq!(big.name.as_ref().unwrap().size, 3 * 1024 * 1024 + 1);

    // open-share: every file, under its path, byte for byte, with its mtime.
    let out = tmp.path().join("out");
    let cref: Vec<&Path> = ciphers.iter().map(PathBuf::as_path).collect();
    let (code, o, e) = open_share(&share_file, &id, &cref, &out);
    assert_eq!(code, 0, "{o}{e}");
    for (p, data) in &want {
        let got = std::fs::read(out.join(p)).unwrap();
        assert!(
            got == *data,
            "{p}: {} bytes, want {}",
            got.len(),
            data.len()
        );
    }
    assert!(!out.join("unshared").exists());
    // With the share and the whole cipherdir, no other file opens.
    let other_blob = cipher_path(&m.cipherdir, "/unshared");
    let (code, _, err) = open_share(&share_file, &id, &[&other_blob], &tmp.path().join("x"));
    assert_eq!(code, 45, "{err}");
    assert!(
        err.contains("not the ciphertext of any file in the share"),
        "{err}"
    );

    // One file to a file, and to standard output.
    let one = tmp.path().join("one.age");
    let c = share(&m.cipherdir, &["/d/chunk+1"], &[&public], &one, &[]);
    let dst = tmp.path().join("plain.bin");
    let (code, o, e) = open_share(&one, &id, &[&c[0]], &dst);
    assert_eq!(code, 0, "{o}{e}");
    assert_eq!(std::fs::read(&dst).unwrap(), want[4].1);
    let stdout = Command::new(common::mount::bin())
        .args([
            "open-share",
            one.to_str().unwrap(),
            "-i",
            id.to_str().unwrap(),
        ])
        .arg(&c[0])
        .args(["-o", "-"])
        .output()
        .unwrap();
    assert!(stdout.status.success());
    assert_eq!(stdout.stdout, want[4].1);

    // --no-names: no path in the payload.
    let anon = tmp.path().join("anon.age");
    share(
        &m.cipherdir,
        &["/d/chunk"],
        &[&public],
        &anon,
        &["--no-names"],
    );
    let (ok, plain, _) = age_decrypt(&id, &anon);
    assert!(ok);
    assert!(!contains(&plain, b"chunk"));
    assert!(payload::decode(&plain).unwrap()[0].name.is_none());
}

#[test]
fn wrong_identities_tampered_shares_and_non_shares_are_refused_with_46() {
    let mut m = Mounted::new();
    std::fs::write(m.path("f"), pattern(10_000, 3)).unwrap();
    m.unmount();
    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "a.key");
    let (other_id, _) = age_keygen(tmp.path(), "b.key");
    let s = tmp.path().join("s.age");
    let c = share(&m.cipherdir, &["/f"], &[&public], &s, &[]);
    let out = tmp.path().join("out");

    let (code, _, err) = open_share(&s, &other_id, &[&c[0]], &out);
    assert_eq!(code, 46, "{err}");
    let (ok, _, _) = age_decrypt(&other_id, &s);
    assert!(!ok);

    let len = std::fs::metadata(&s).unwrap().len();
    for off in [len - 1, len - 40, 40] {
        let t = tmp.path().join(format!("t{off}.age"));
        std::fs::copy(&s, &t).unwrap();
        flip_byte(&t, off);
        let (code, _, err) = open_share(&t, &id, &[&c[0]], &out);
        assert_eq!(code, 46, "byte {off}: {err}");
    }
    // An age file that is no share.
    let plain = tmp.path().join("note.txt");
    std::fs::write(&plain, b"just a note").unwrap();
    let note = tmp.path().join("note.age");
    let st = Command::new("age")
        .args(["-r", &public, "-o"])
        .arg(&note)
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, _, err) = open_share(&note, &id, &[&c[0]], &out);
    assert_eq!(code, 46, "{err}");
    assert!(err.contains("not a cofferfs share"), "{err}");
    assert!(!out.exists());
}

#[test]
fn tampered_truncated_and_foreign_ciphertexts_are_45_and_leave_nothing() {
    let mut m = Mounted::new();
    let data = pattern(5 * CHUNK + 100, 1);
    std::fs::write(m.path("f"), &data).unwrap();
    std::fs::write(m.path("g"), pattern(5 * CHUNK + 100, 2)).unwrap();
    m.unmount();
    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "a.key");
    let s = tmp.path().join("s.age");
    let c = share(&m.cipherdir, &["/f"], &[&public], &s, &[]);
    let outdir = tmp.path().join("o");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("f.out");

    let bad = tmp.path().join("bad");
    std::fs::copy(&c[0], &bad).unwrap();
    flip_byte(&bad, (HEADER_LEN + 2 * (CHUNK + 28) + 50) as u64);
    let (code, _, err) = open_share(&s, &id, &[&bad], &out);
    assert_eq!(code, 45, "{err}");
    assert!(err.contains("chunk 2"), "{err}");
    assert!(
        err.contains(bad.to_str().unwrap()),
        "names the ciphertext: {err}"
    );
    assert!(names_in(&outdir).is_empty(), "{:?}", names_in(&outdir));

    // Cut at a chunk boundary (a v2 file's last chunk must carry the final flag) and mid-chunk.
    for cut in [
        HEADER_LEN + 4 * (CHUNK + 28),
        HEADER_LEN + 3 * (CHUNK + 28) + 1000,
    ] {
        let t = tmp.path().join("cut");
        std::fs::copy(&c[0], &t).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&t)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let (code, _, err) = open_share(&s, &id, &[&t], &out);
        assert_eq!(code, 45, "cut at {cut}: {err}");
        assert!(err.contains("chunk 3"), "{err}");
        assert!(names_in(&outdir).is_empty());
    }

    let g = cipher_path(&m.cipherdir, "/g");
    let (code, _, err) = open_share(&s, &id, &[&g], &out);
    assert_eq!(code, 45, "{err}");
    // The same, with its header made to claim the shared file's id: chunk 0 fails.
    let forged = tmp.path().join("forged");
    let mut bytes = std::fs::read(&g).unwrap();
    bytes[..HEADER_LEN].copy_from_slice(&std::fs::read(&c[0]).unwrap()[..HEADER_LEN]);
    std::fs::write(&forged, bytes).unwrap();
    let (code, _, err) = open_share(&s, &id, &[&forged], &out);
    assert_eq!(code, 45, "{err}");
    assert!(err.contains("chunk 0"), "{err}");
    assert!(names_in(&outdir).is_empty());

    let (code, o, err) = open_share(&s, &id, &[&c[0]], &out);
    assert_eq!(code, 0, "{o}{err}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(names_in(&outdir), ["f.out"]);
}

#[test]
fn a_rewritten_file_still_opens_and_reencrypt_ends_the_share() {
    let mut m = Mounted::new();
    std::fs::write(m.path("f"), pattern(9000, 4)).unwrap();
    m.unmount();
    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "a.key");
    let s = tmp.path().join("s.age");
    let c = share(&m.cipherdir, &["/f"], &[&public], &s, &[]);
    let cd = m.cipherdir.to_str().unwrap().to_owned();

    let (code, list, err) = cofferfs(&["shares", "list", &cd]);
    assert_eq!(code, 0, "{err}");
    assert!(list.contains(&public), "{list}");
    assert!(list.contains("key live"), "{list}");

    // Rewritten through the mount: same file, same key, so the share opens the new content.
    m.mount(&[]);
    let new = pattern(20_000, 5);
    std::fs::write(m.path("f"), &new).unwrap();
    m.unmount();
    // A new KEK changes no file key: the share still opens (README).
    let (code, o, err) = cofferfs(&["rotate", &cd]);
    assert_eq!(code, 0, "{o}{err}");
    let out = tmp.path().join("out");
    let (code, o, err) = open_share(&s, &id, &[&c[0]], &out);
    assert_eq!(code, 0, "{o}{err}");
    assert_eq!(std::fs::read(&out).unwrap(), new);
    let before_reencrypt = tmp.path().join("old-ciphertext");
    std::fs::copy(&c[0], &before_reencrypt).unwrap();

    let (code, o, err) = cofferfs(&["reencrypt", &cd, "/f"]);
    assert_eq!(code, 0, "{o}{err}");
    assert!(o.contains("ends share"), "{o}");
    assert!(o.contains(&public), "{o}");
    let (_, list, _) = cofferfs(&["shares", "list", &cd]);
    assert!(list.contains("share ended"), "{list}");
    let out2 = tmp.path().join("out2");
    let (code, _, err) = open_share(&s, &id, &[&c[0]], &out2);
    assert_eq!(code, 45, "{err}");
    assert!(!out2.exists());
    // A copy of the ciphertext from before the re-encryption still opens (README).
    let (code, o, err) = open_share(&s, &id, &[&before_reencrypt], &out2);
    assert_eq!(code, 0, "{o}{err}");
    assert_eq!(std::fs::read(&out2).unwrap(), new);
}

#[test]
fn share_refuses_a_mounted_volume_bad_recipients_and_takes_recipient_files_and_ssh_keys() {
    let mut m = Mounted::new();
    std::fs::write(m.path("f"), b"shared text").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (a_id, a_pub) = age_keygen(tmp.path(), "a.key");
    let (b_id, b_pub) = age_keygen(tmp.path(), "b.key");
    let cd = m.cipherdir.to_str().unwrap().to_owned();
    let s = tmp.path().join("s.age");
    let s_str = s.to_str().unwrap();
    let (code, _, err) = cofferfs(&["share", &cd, "/f", "--to", &a_pub, "-o", s_str]);
    assert_eq!(code, 15, "{err}");
    assert!(!s.exists());
    m.unmount();
    let (code, _, err) = cofferfs(&["share", &cd, "/f", "--to", "age1nonsense", "-o", s_str]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cofferfs(&["share", &cd, "/missing", "--to", &a_pub, "-o", s_str]);
    assert_ne!(code, 0, "{err}");
    assert!(!s.exists());

    // -R with two recipients and a comment; and an ssh-ed25519 key made by ssh-keygen.
    let ssh_key = tmp.path().join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bob@example", "-f"])
        .arg(&ssh_key)
        .status()
        .unwrap();
    assert!(st.success());
    let ssh_pub = std::fs::read_to_string(tmp.path().join("id_ed25519.pub")).unwrap();
    let rsa_key = tmp.path().join("id_rsa");
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "rsa",
            "-b",
            "2048",
            "-N",
            "",
            "-C",
            "carol@example",
            "-f",
        ])
        .arg(&rsa_key)
        .status()
        .unwrap();
    assert!(st.success());
    let rsa_pub = std::fs::read_to_string(tmp.path().join("id_rsa.pub")).unwrap();
    let rf = tmp.path().join("recipients.txt");
    std::fs::write(&rf, format!("# team\n{a_pub}\n\n{b_pub}\n")).unwrap();
    let c = share(
        &m.cipherdir,
        &["/f"],
        &[ssh_pub.trim(), rsa_pub.trim()],
        &s,
        &["-R", rf.to_str().unwrap()],
    );
    for ident in [&a_id, &b_id, &ssh_key, &rsa_key] {
        let out = tmp.path().join("out");
        let (code, o, err) = open_share(&s, ident, &[&c[0]], &out);
        assert_eq!(code, 0, "{}: {o}{err}", ident.display());
        assert_eq!(std::fs::read(&out).unwrap(), b"shared text");
        std::fs::remove_file(&out).unwrap();
        let (ok, _, err) = age_decrypt(ident, &s);
        assert!(ok, "age -d -i {}: {err}", ident.display());
    }
    let (_, list, _) = cofferfs(&["shares", "list", &cd]);
    assert!(
        list.contains(&a_pub)
            && list.contains(&b_pub)
            && list.contains("ssh-ed25519")
            && list.contains("ssh-rsa"),
        "{list}"
    );
    // A share is never overwritten.
    let (code, _, err) = cofferfs(&["share", &cd, "/f", "--to", &a_pub, "-o", s_str]);
    assert_ne!(code, 0, "{err}");
}

#[test]
fn a_bundle_of_a_directory_opens_from_the_share_alone() {
    let mut m = Mounted::new();
    std::fs::create_dir_all(m.path("d/sub")).unwrap();
    let a = pattern(2 * CHUNK + 3, 6);
    let b = pattern(77, 7);
    std::fs::write(m.path("d/a"), &a).unwrap();
    std::fs::write(m.path("d/sub/b"), &b).unwrap();
    std::fs::write(m.path("d/sub/empty"), b"").unwrap();
    std::fs::write(m.path("outside"), b"not shared").unwrap();
    m.unmount();
    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "a.key");
    let s = tmp.path().join("s.age");
    let cd = m.cipherdir.to_str().unwrap().to_owned();
    let args = [
        "share",
        &cd,
        "-r",
        "/d",
        "--bundle",
        "--to",
        &public,
        "-o",
        s.to_str().unwrap(),
    ];
    let (code, o, err) = cofferfs(&args);
    assert_eq!(code, 0, "{o}{err}");
    assert!(o.contains("shared 3 file(s)"), "{o}");

    let (ok, plain, err) = age_decrypt(&id, &s);
    assert!(ok, "{err}");
    let (entries, bundle) = payload::decode_bundled(&plain).unwrap();
    let bundle = bundle.unwrap();
    let blob_a = cipher_path(&m.cipherdir, "/d/a");
    let k = entries
        .iter()
        .position(|e| e.name.as_ref().unwrap().path == Path::new("d/a"))
        .unwrap();
    assert_eq!(bundle[k], std::fs::read(&blob_a).unwrap());
    assert!(!contains(&plain, b"outside"));

    // The share alone: no ciphertext file, no volume.
    let out = tmp.path().join("out");
    let (code, o, err) = open_share(&s, &id, &[], &out);
    assert_eq!(code, 0, "{o}{err}");
    assert_eq!(std::fs::read(out.join("d/a")).unwrap(), a);
    assert_eq!(std::fs::read(out.join("d/sub/b")).unwrap(), b);
    assert_eq!(std::fs::read(out.join("d/sub/empty")).unwrap(), b"");
    assert!(!out.join("outside").exists());

    // A ciphertext on the command line as well is refused; a tampered bundle is 46.
    let (code, _, err) = open_share(&s, &id, &[&blob_a], &tmp.path().join("x"));
    assert_eq!(code, 2, "{err}");
    let t = tmp.path().join("t.age");
    std::fs::copy(&s, &t).unwrap();
    flip_byte(&t, std::fs::metadata(&t).unwrap().len() - 100);
    let (code, _, err) = open_share(&t, &id, &[], &tmp.path().join("y"));
    assert_eq!(code, 46, "{err}");
    assert!(!tmp.path().join("y").exists());
}

#[test]
fn a_64_mib_plus_one_file_opens_byte_for_byte() {
    let mut m = Mounted::new();
    let data = pattern(64 * 1024 * 1024 + 1, 8);
    std::fs::write(m.path("big"), &data).unwrap();
    m.unmount();
    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "a.key");
    let s = tmp.path().join("s.age");
    let c = share(&m.cipherdir, &["/big"], &[&public], &s, &[]);
    let out = tmp.path().join("big.out");
    let (code, o, err) = open_share(&s, &id, &[&c[0]], &out);
    assert_eq!(code, 0, "{o}{err}");
    let got = std::fs::read(&out).unwrap();
    assert!(got == data, "{} bytes, want {}", got.len(), data.len());
}

#[test]
fn a_v1_file_of_the_v1_fixture_is_shared_with_its_v1_rules() {
    let (_dir, c) = common::fixture_copy("v1");
    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "a.key");
    let s = tmp.path().join("s.age");
    let cd = c.to_str().unwrap();
    let args = [
        "share",
        cd,
        "/dir/nested.bin",
        "--to",
        &public,
        "-o",
        s.to_str().unwrap(),
        "--print-cipher-path",
    ];
    let (code, o, err) = common::mount::cofferfs_with(&args, common::FIXTURE_PASSWORD);
    assert_eq!(code, 0, "{o}{err}");
    let blob = PathBuf::from(o.lines().last().unwrap());
    let (ok, plain, err) = age_decrypt(&id, &s);
    assert!(ok, "{err}");
    assert_eq!(payload::decode(&plain).unwrap()[0].file_version, 1);
    let out = tmp.path().join("nested.bin");
    let (code, o, err) = open_share(&s, &id, &[&blob], &out);
    assert_eq!(code, 0, "{o}{err}");
    let want: Vec<u8> = (0..10000u32).map(|i| ((i * 7) % 256) as u8).collect();
    assert_eq!(std::fs::read(&out).unwrap(), want);
}

/// A payload written by hand (not by cofferfs) with one entry at `path`.
fn hand_made_payload(path: &[u8]) -> Vec<u8> {
    let mut p = b"CFSSHARE".to_vec();
    p.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x11; 16]);
    p.extend_from_slice(&[0, 2, 0, 0, 0x10, 0]);
    p.extend_from_slice(&[0x22; 32]);
    p.extend_from_slice(&(path.len() as u16).to_be_bytes());
    p.extend_from_slice(path);
    p.extend_from_slice(&[0; 20]);
    p
}

#[test]
fn a_share_made_elsewhere_with_an_escaping_path_is_refused_with_46() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, public) = age_keygen(tmp.path(), "a.key");
    let cipher = tmp.path().join("ciphertext");
    let mut bytes = b"CFS\x01\x00\x02".to_vec();
    bytes.extend_from_slice(&[0x11; 16]);
    std::fs::write(&cipher, &bytes).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (k, path) in [&b"../escape"[..], b"/tmp/escape", b"a/../../escape"]
        .iter()
        .enumerate()
    {
        let plain = tmp.path().join(format!("payload{k}"));
        std::fs::write(&plain, hand_made_payload(path)).unwrap();
        let share = tmp.path().join(format!("evil{k}.age"));
        let st = Command::new("age")
            .args(["-r", &public, "-o"])
            .arg(&share)
            .arg(&plain)
            .status()
            .unwrap();
        assert!(st.success());
        let (code, _, err) = open_share(&share, &id, &[&cipher], &out);
        assert_eq!(code, 46, "{}: {err}", String::from_utf8_lossy(path));
        assert!(err.contains("path"), "{err}");
    }
    assert!(names_in(&out).is_empty());
    assert!(!tmp.path().join("escape").exists());
    // The same payload with a plain relative path opens (an empty file: the header alone).
    let plain = tmp.path().join("payload-ok");
    std::fs::write(&plain, hand_made_payload(b"fine")).unwrap();
    let share = tmp.path().join("ok.age");
    let st = Command::new("age")
        .args(["-r", &public, "-o"])
        .arg(&share)
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, o, err) = open_share(&share, &id, &[&cipher], &out);
    assert_eq!(code, 0, "{o}{err}");
    assert_eq!(std::fs::read(out.join("fine")).unwrap(), b"");
}
