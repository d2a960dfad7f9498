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
    let mut stream = UnixStream::connect(path)?;
    stream.set_write_timeout(Some(SEND_TIMEOUT))?;
    let body = protocol::encode(&RequestEnvelope {
        v: VERSION,
        request: request.clone(),
    })?;
    protocol::write_frame(&mut stream, &body)?;
    let frame = protocol::read_frame(&mut stream)?;
    serde_json::from_slice(&frame).map_err(|e| ProtocolError::Malformed(e.to_string()))
}
