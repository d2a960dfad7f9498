//! The command side of the control socket: find the daemon of a volume by its volume id and
//! send it one request. A command calls this only once the volume lock tells it the volume is
//! in use, so "no daemon answers" then means the lock holder is another management command
//! (or a daemon of an older cofferfs).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::paths;
use super::protocol::{self, ProtocolError, Reply, Request, RequestEnvelope, VERSION};

/// How long sending a request may take (the reply may take as long as the work does: a
/// `fsck` or `reencrypt` of a big volume).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket of the daemon serving `volume_id`, if one answers a connection.
pub fn find(volume_id: &[u8; 16]) -> Option<PathBuf> {
    paths::candidates(volume_id)
        .into_iter()
        .find(|p| UnixStream::connect(p).is_ok())
}

/// Sends `request` to the daemon listening at `path` and waits for its reply.
pub fn request_at(path: &Path, request: &Request) -> Result<Reply, ProtocolError> {
    exchange(UnixStream::connect(path)?, request)
}

/// Sends `request` over the connected `stream` and reads the reply. A daemon busy with
/// other clients answers "busy" and closes without reading the request, so the send may
/// fail (`EPIPE`) while that answer waits to be read: the reply is read whatever the send
/// did, and the send's error is reported only when there is no reply.
fn exchange(mut stream: UnixStream, request: &Request) -> Result<Reply, ProtocolError> {
    stream.set_write_timeout(Some(SEND_TIMEOUT))?;
    let body = protocol::encode(&RequestEnvelope {
        v: VERSION,
        request: request.clone(),
    })?;
    let sent = protocol::write_frame(&mut stream, &body);
    let frame = match (protocol::read_frame(&mut stream), sent) {
        (Ok(frame), _) => frame,
        (Err(_), Err(send_error)) => return Err(send_error),
        (Err(read_error), Ok(())) => return Err(read_error),
    };
    serde_json::from_slice(&frame).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    use super::*;

    /// The server's side of a "busy" refusal: the reply, then the connection closed before
    /// the client's request is read, so the client's send fails with `EPIPE`.
    #[test]
    fn a_reply_sent_before_the_request_is_read_is_still_received() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("c.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let stream = UnixStream::connect(&path).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        let busy = br#"{"v":1,"ok":false,"code":62,"message":"busy","data":null}"#;
        server_side
            .write_all(&(busy.len() as u32).to_be_bytes())
            .unwrap();
        server_side.write_all(busy).unwrap();
        drop(server_side);
        // The peer is gone: the send fails at once (EPIPE), the reply is in the buffer.
        let reply = exchange(stream, &Request::Status).unwrap();
        assert!(!reply.ok);
        assert_eq!(reply.code, 62);
    }
}
