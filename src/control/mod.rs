//! The control socket of a mount daemon: how management commands (`passwd`, `keys add|remove`,
//! `rotate`, `reencrypt`, `fsck`, `status`) reach the daemon of a mounted volume instead of
//! being refused because the daemon holds the volume lock. `protocol` is the wire format
//! (length-prefixed, versioned JSON; docs/CONTROL.md), `server` the daemon's listener (bounded
//! threads, time-outs, peer check), `client` the command side, `paths` where a volume's socket
//! is found (from its volume id, never inside the cipherdir).
//!
//! This layer moves requests and replies only: what a request does is decided by the
//! [`server::Handler`] the daemon gives it (in `cli`), which proves the secret against a slot
//! before any change. Must not import `fuser`, nor know about FUSE inodes.

pub mod client;
pub mod paths;
pub mod protocol;
pub mod server;
