//! The local-socket transport: binds `NAME.sock` with mode 0600 set before bind, and serves its
//! connections. When the name guard had to bind the socket anew, accepting goes on on the new one.

use std::io;
use std::path::Path;

use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use interprocess::os::unix::uds_local_socket::tokio::Listener;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

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

/// Serves the socket until the server stops; `rebound` brings the listener of a socket bound
/// anew.
pub async fn serve(transports: Transports, listener: Listener, rebound: mpsc::Receiver<Listener>) {
    let socket = Socket { listener, rebound };
    let served = transports.clone();
    let serve = move |stream: UnixStream, id| {
        let (reader, writer) = stream.into_split();
        super::serve(served.clone(), Peer { id, transport: "socket", token: None }, reader, writer)
    };
    transports.accept_loop("socket", socket, Limit::Refuse(MAX_CONNECTIONS), serve).await;
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
