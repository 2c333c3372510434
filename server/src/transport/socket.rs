//! The local-socket transport: binds `NAME.sock` with mode 0600 set before bind, and serves its
//! connections. When the name guard had to bind the socket anew, accepting goes on on the new one.
//! A connection from a process of another user is refused with one error line: the file modes
//! keep others out only as long as nobody changes them (and never keep out root), so the
//! kernel's word on the peer (SO_PEERCRED) decides. A client may pass its standard streams with
//! a request (`fds.rs`).

use std::io;
use std::path::Path;

use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use interprocess::os::unix::uds_local_socket::tokio::Listener;
use mcli_protocol::code;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::dispatch::error_reply;
use super::{Limit, Listen, Peer, Transports};

/// Connections served at once on the local socket.
const MAX_CONNECTIONS: usize = 2048;

/// Binds the socket file at `path`, which must not exist.
pub fn bind(path: &Path) -> io::Result<Listener> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    // The server removes its own socket file at exit, and only while it still holds the name
    // lock, so the listener must not unlink it on drop.
    ListenerOptions::new().name(name).mode(0o600).reclaim_name(false).create_tokio_as::<Listener>()
}

/// The process that made `listener` listen, which is what clients see as the socket's peer
/// (SO_PEERCRED of a listening socket names the process that called listen()).
pub fn listening_pid(listener: &Listener) -> Option<u32> {
    let creds = nix::sys::socket::getsockopt(listener, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    u32::try_from(creds.pid()).ok()
}

/// Serves the socket until the server stops; `rebound` brings the listener of a socket bound
/// anew.
pub async fn serve(transports: Transports, listener: Listener, rebound: mpsc::Receiver<Listener>) {
    let socket = Socket { listener, rebound };
    let served = transports.clone();
    let serve = move |stream: UnixStream, id| {
        let served = served.clone();
        async move {
            if let Err(refusal) = check_peer(&stream) {
                refuse(stream, id, &refusal).await;
                return;
            }
            let (reader, writer) = stream.into_split();
            let reader = super::fds::FdReader::new(reader);
            super::serve(served, Peer { id, transport: "socket", token: None }, reader, writer).await;
        }
    };
    transports.accept_loop("socket", socket, Limit::Refuse(MAX_CONNECTIONS), serve).await;
}

/// Why a peer may not use this server.
struct Refusal {
    message: String,
    uid: Option<u32>,
}

/// Checks that the peer of `stream` runs as the user this server runs as.
fn check_peer(stream: &UnixStream) -> Result<(), Refusal> {
    let me = nix::unistd::geteuid().as_raw();
    let socket = stream.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.display().to_string()));
    let socket = socket.unwrap_or_else(|| "this socket".to_owned());
    match stream.peer_cred() {
        Ok(peer) if peer.uid() == me => Ok(()),
        Ok(peer) => Err(Refusal {
            message: format!(
                "the mcli-server on {socket} serves only its own user (uid {me}); a process of uid {} may not connect",
                peer.uid()
            ),
            uid: Some(peer.uid()),
        }),
        Err(err) => Err(Refusal { message: format!("cannot tell who connected to {socket}: {err}"), uid: None }),
    }
}

/// Tells a refused peer why (one error line) and closes its connection.
async fn refuse(mut stream: UnixStream, id: usize, refusal: &Refusal) {
    tracing::warn!(connection = id, uid = refusal.uid, "refused a connection: {}", refusal.message);
    let mut reply = error_reply("null", code::UNAUTHORIZED, &refusal.message);
    reply.push(b'\n');
    let _ = stream.write_all(&reply).await;
}

/// The listener in use, and where a new one comes from.
struct Socket {
    listener: Listener,
    rebound: mpsc::Receiver<Listener>,
}

impl Listen for Socket {
    type Stream = UnixStream;

    async fn accept(&mut self) -> io::Result<UnixStream> {
        loop {
            tokio::select! {
                biased;
                Some(listener) = self.rebound.recv() => self.listener = listener,
                accepted = self.listener.inner().accept() => return accepted.map(|(stream, _)| stream),
            }
        }
    }
}
