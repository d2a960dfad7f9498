//! The daemon's side of the control socket: a listener thread that hands each connection to
//! a worker thread, at most [`MAX_CLIENTS`] at once (one more is answered "busy" and closed),
//! each with read and write time-outs, so a slow, silent or hostile client holds one worker
//! for at most [`IO_TIMEOUT`] and never touches the mount. Peers are checked by
//! `SO_PEERCRED`: only the user who mounted (and root) are served, on top of the socket's
//! mode 0600 and its private directory.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::protocol::{self, ProtocolError, Reply, Request};

/// Connections served at once; one more gets a "busy" reply.
pub const MAX_CLIENTS: usize = 4;

/// How long a client may take to send its request, or to take the reply.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Its process id.
    pub pid: u32,
    /// Its effective user id.
    pub uid: u32,
}

/// What the daemon does with a request. The handler proves a request's secret before any
/// change (the socket grants nothing by itself).
pub trait Handler: Send + Sync {
    /// Answers one request.
    fn handle(&self, request: Request, peer: Peer) -> Reply;
}

/// The exit codes the listener itself answers with (the table is the CLI's).
#[derive(Debug, Clone, Copy)]
pub struct Codes {
    /// A malformed, oversized, truncated or unknown request, or another protocol version.
    pub protocol: i32,
    /// Too many clients at once, or a peer that may not use this daemon.
    pub refused: i32,
}

/// A bound control socket; the socket file (and the default-name symlink) go away on drop.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    link: Option<PathBuf>,
}

/// Removes a stale socket left at `path` by a daemon that died (kill -9). The volume lock is
/// held by the caller, so no live daemon of this volume can own it; anything but a socket or
/// a symlink is left alone (and the bind then fails).
fn remove_stale(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && (meta.file_type().is_socket() || meta.file_type().is_symlink())
    {
        let _ = std::fs::remove_file(path);
    }
}

impl Server {
    /// Binds the socket at `path`, mode 0600 from the start (bound under umask 0177), after
    /// removing a stale one; with `link`, the default name, a symlink to `path` is made there
    /// too so that commands find it. Call before the daemon clears its umask.
    pub fn bind(path: &Path, link: Option<&Path>) -> std::io::Result<Server> {
        remove_stale(path);
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = UnixListener::bind(path);
        rustix::process::umask(old);
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let link = match link {
            Some(l) if l != path => {
                remove_stale(l);
                let target = std::path::absolute(path)?;
                std::os::unix::fs::symlink(&target, l)?;
                Some(l.to_owned())
            }
            _ => None,
        };
        Ok(Server {
            listener,
            path: path.to_owned(),
            link,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections on a thread of its own for the life of the process.
    pub fn spawn(&self, handler: Arc<dyn Handler>, codes: Codes) -> std::io::Result<()> {
        let listener = self.listener.try_clone()?;
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, handler, codes))?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(l) = &self.link {
            let _ = std::fs::remove_file(l);
        }
    }
}

fn accept_loop(listener: UnixListener, handler: Arc<dyn Handler>, codes: Codes) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            send(
                &mut stream,
                &Reply::error(
                    codes.refused,
                    format!("the daemon is busy with {MAX_CLIENTS} other requests: try again"),
                ),
            );
            continue;
        }
        let (handler, active) = (handler.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("control-client".into())
            .spawn(move || {
                serve_one(&mut stream, &*handler, codes);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            log::warn!("control socket: could not start a worker thread");
        }
    }
}

/// The peer of `stream`, if the kernel tells.
fn peer_of(stream: &UnixStream) -> Option<Peer> {
    let cred = rustix::net::sockopt::socket_peercred(stream).ok()?;
    Some(Peer {
        pid: cred.pid.as_raw_nonzero().get() as u32,
        uid: cred.uid.as_raw(),
    })
}

fn send(stream: &mut UnixStream, reply: &Reply) {
    match protocol::encode(reply) {
        Ok(body) => {
            if let Err(e) = protocol::write_frame(stream, &body) {
                log::info!("control socket: reply not delivered: {e}");
            }
        }
        Err(e) => log::warn!("control socket: reply not encoded: {e}"),
    }
}

/// Reads one request, answers it, closes. Every failure of the client's making is answered
/// with an error reply (when the socket still takes one) and logged without contents.
fn serve_one(stream: &mut UnixStream, handler: &dyn Handler, codes: Codes) {
    let me = rustix::process::geteuid().as_raw();
    let Some(peer) = peer_of(stream).filter(|p| p.uid == me || p.uid == 0) else {
        log::warn!("control socket: connection from another user refused");
        send(
            stream,
            &Reply::error(
                codes.refused,
                "this daemon serves only the user who mounted",
            ),
        );
        return;
    };
    let request = protocol::read_frame(stream).and_then(|f| protocol::decode_request(&f));
    let reply = match request {
        Ok(req) => {
            log::info!("control: {} from pid {}", req.op(), peer.pid);
            handler.handle(req, peer)
        }
        Err(ProtocolError::Io(e)) => {
            log::info!("control socket: pid {}: {e}", peer.pid);
            Reply::error(codes.protocol, format!("control socket: {e}"))
        }
        Err(e) => {
            log::info!("control socket: pid {}: {e}", peer.pid);
            Reply::error(codes.protocol, e.to_string())
        }
    };
    send(stream, &reply);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::control::client;
    use crate::control::protocol::{MAX_FRAME, read_frame};

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, request: Request, peer: Peer) -> Reply {
            if let Request::Status = request {
                std::thread::sleep(Duration::from_millis(300));
            }
            Reply::done(request.op(), serde_json::json!({ "pid": peer.pid }))
        }
    }

    const CODES: Codes = Codes {
        protocol: 61,
        refused: 62,
    };

    fn raw(path: &Path, bytes: &[u8]) -> Reply {
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let frame = read_frame(&mut s).unwrap();
        serde_json::from_slice(&frame).unwrap()
    }

    #[test]
    fn bad_messages_get_error_replies_and_the_server_keeps_serving() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("c.sock");
        let server = Server::bind(&path, None).unwrap();
        server.spawn(Arc::new(Echo), CODES).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let mut oversized = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        oversized.extend_from_slice(b"{}");
        let unknown = br#"{"v":1,"op":"erase_everything"}"#;
        let mut unknown_frame = (unknown.len() as u32).to_be_bytes().to_vec();
        unknown_frame.extend_from_slice(unknown);
        let mut garbage = 5u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"\x00\x01\x02\x03\x04");
        for bytes in [
            &oversized[..],
            &unknown_frame[..],
            &garbage[..],
            &[0u8, 0, 0, 20, b'{'][..],
            &[][..],
        ] {
            let r = raw(&path, bytes);
            assert!(!r.ok);
            assert_eq!(r.code, 61, "{r:?}");
        }
        let r = client::request_at(&path, &Request::Status).unwrap();
        assert!(r.ok, "{r:?}");
        assert_eq!(r.data["pid"], std::process::id());
    }

    #[test]
    fn clients_beyond_the_bound_are_refused_cleanly() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("c.sock");
        let server = Server::bind(&path, None).unwrap();
        server.spawn(Arc::new(Echo), CODES).unwrap();
        let threads: Vec<_> = (0..MAX_CLIENTS * 3)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || client::request_at(&p, &Request::Status).unwrap())
            })
            .collect();
        let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(replies.iter().any(|r| r.ok));
        assert!(replies.iter().all(|r| r.ok || r.code == 62), "{replies:?}");
        // A silent client does not stop the others.
        let mut silent = UnixStream::connect(&path).unwrap();
        let r = client::request_at(&path, &Request::Status).unwrap();
        assert!(r.ok);
        let mut buf = [0u8; 1];
        silent
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        assert!(silent.read(&mut buf).is_err());
    }

    #[test]
    fn the_socket_and_its_link_go_away_on_drop_and_stale_ones_are_replaced() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("c.sock");
        let link = t.path().join("default.sock");
        // A socket left by a daemon that was killed.
        drop(UnixListener::bind(&path).unwrap());
        let server = Server::bind(&path, Some(&link)).unwrap();
        server.spawn(Arc::new(Echo), CODES).unwrap();
        assert!(client::request_at(&link, &Request::Status).unwrap().ok);
        drop(server);
        assert!(path.symlink_metadata().is_err());
        assert!(link.symlink_metadata().is_err());
    }
}
