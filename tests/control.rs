//! The control socket of a real mount daemon, spoken to byte by byte: malformed, oversized,
//! truncated, unknown and other-version messages get an error reply (exit-code 61 in it) and
//! the mount goes on working; silent clients do not keep others out.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mount::{Mounted, run_with_stdin as run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn socket_of(m: &Mounted) -> PathBuf {
    let (code, out, err) = run(&["status", "--json", s(&m.cipherdir)], "");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    PathBuf::from(v["control_socket"].as_str().unwrap())
}

/// Sends `bytes`, half-closes, and reads the one reply frame.
fn exchange(sock: &Path, bytes: &[u8]) -> serde_json::Value {
    exchange_after(sock, Duration::ZERO, bytes)
}

/// Connects, waits `pause` (a slow client), sends `bytes`, half-closes, and reads the one
/// reply frame. A daemon busy with other clients answers "busy" and closes without reading
/// the request, so the send may fail (`EPIPE`) while that answer waits to be read: the reply
/// is read whatever the send did, as `cofferfs`'s own client does, and the send's error
/// fails the exchange only when no reply came.
fn exchange_after(sock: &Path, pause: Duration, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    std::thread::sleep(pause);
    let sent = s
        .write_all(bytes)
        .and_then(|()| s.shutdown(std::net::Shutdown::Write));
    let mut len = [0u8; 4];
    if let Err(e) = s.read_exact(&mut len) {
        panic!("no reply ({e}); the send: {sent:?}");
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[test]
fn bad_messages_get_error_replies_and_the_mount_keeps_working() {
    let mut m = Mounted::new();
    std::fs::write(m.path("f"), b"before").unwrap();
    let sock = socket_of(&m);
    let oversized = {
        let mut f = (2u32 << 20).to_be_bytes().to_vec();
        f.extend_from_slice(&[b'x'; 1000]);
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversized", oversized),
        ("truncated", {
            let mut f = 100u32.to_be_bytes().to_vec();
            f.extend_from_slice(br#"{"v":1,"op":"sta"#);
            f
        }),
        ("short length", vec![0, 0]),
        ("empty", vec![]),
        ("zero length", vec![0, 0, 0, 0]),
        ("not json", frame(b"\x00\xffhello")),
        ("unknown op", frame(br#"{"v":1,"op":"delete_all_keys"}"#)),
        ("missing fields", frame(br#"{"v":1,"op":"passwd"}"#)),
        ("other version", frame(br#"{"v":99,"op":"status"}"#)),
        (
            "secret not base64",
            frame(br#"{"v":1,"op":"fsck","auth":{"kind":"password","secret":"%%%"}}"#),
        ),
    ];
    for (what, bytes) in cases {
        let r = exchange(&sock, &bytes);
        assert_eq!(r["ok"], false, "{what}: {r}");
        assert_eq!(r["code"], 61, "{what}: {r}");
        assert_eq!(r["v"], 1, "{what}: {r}");
    }
    // The version is named in the refusal.
    let r = exchange(&sock, &frame(br#"{"v":99,"op":"status"}"#));
    assert!(r["message"].as_str().unwrap().contains("99"), "{r}");
    // A good request still works, and so does the mount.
    let r = exchange(&sock, &frame(br#"{"v":1,"op":"status"}"#));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"before");
    std::fs::write(m.path("g"), b"after").unwrap();
    assert_eq!(std::fs::read(m.path("g")).unwrap(), b"after");
    m.unmount();
}

#[test]
fn silent_clients_do_not_keep_others_out() {
    let mut m = Mounted::new();
    let sock = socket_of(&m);
    // Three connections that say nothing hold three of the four workers (until their
    // time-out); a fourth client is still served.
    let silent: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let r = exchange(&sock, &frame(br#"{"v":1,"op":"status"}"#));
    assert_eq!(r["ok"], true, "{r}");
    // Beyond the bound: refused cleanly with a reply, not left hanging.
    let more: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let r = exchange(&sock, &frame(br#"{"v":1,"op":"status"}"#));
    assert!(r["ok"] == true || r["code"] == 61, "{r}");
    // Fill the bound for sure: the worker of a request just answered may not have counted
    // itself out yet when the connections above were accepted, so all of them may have been
    // refused and a worker left free. A refused connection gets its reply at once, one a
    // worker holds gets nothing; refusals seen twice in a row, 100 ms apart, mean every
    // worker is held (by connections that stay silent for `IO_TIMEOUT`, 10 s).
    let mut held = Vec::new();
    let mut refusals = 0;
    for _ in 0..20 {
        let c = UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        match (&c).read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                held.push(c);
                refusals = 0;
            }
            _ => {
                refusals += 1;
                if refusals == 2 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    assert_eq!(refusals, 2, "the bound never filled");
    assert!(
        held.len() <= 1,
        "{} connections held beyond 3 + 1",
        held.len()
    );
    // A slow client beyond the bound: the refusal is sent and the connection closed before
    // it says anything; it still gets the refusal.
    let r = exchange_after(
        &sock,
        Duration::from_millis(300),
        &frame(br#"{"v":1,"op":"status"}"#),
    );
    assert_eq!(r["code"], 61, "{r}");
    drop((held, more, silent));
    std::fs::write(m.path("f"), b"x").unwrap();
    m.unmount();
}
