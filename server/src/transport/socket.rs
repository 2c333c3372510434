//! The local-socket listener: binds `NAME.sock` with mode 0600 set before bind, and accepts
//! connections up to a bound. A connection over the bound is told so and closed.

use std::io;
use std::path::Path;
use std::sync::Arc;

use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use interprocess::os::unix::uds_local_socket::tokio::Listener;
use jsonrpsee::Methods;
use mcli_protocol::code;
use mcli_protocol::framing::DEFAULT_MAX_FRAME;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};

use super::connection;
use super::dispatch::error_reply;
use crate::state::State;

/// Connections served at once on the local socket.
pub const MAX_CONNECTIONS: usize = 2048;

/// Tells a connection over the limit so (one error line), then closes it.
pub async fn refuse_busy<S: tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    let message = format!("server busy: too many connections (limit {MAX_CONNECTIONS})");
    let mut reply = error_reply("null", code::SERVER_BUSY, &message);
    reply.push(b'\n');
    let _ = stream.write_all(&reply).await;
}

/// Binds the socket file at `path`, which must not exist.
pub fn bind(path: &Path) -> io::Result<Listener> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    // The server removes its own socket file at exit, and only while it still holds the name
    // lock, so the listener must not unlink it on drop.
    ListenerOptions::new().name(name).mode(0o600).reclaim_name(false).create_tokio_as::<Listener>()
}

/// Accepts connections until the server stops, switching to a new listener when the socket had
/// to be bound anew.
pub async fn accept_loop(
    state: State,
    methods: Methods,
    mut listener: Listener,
    mut rebound: mpsc::Receiver<Listener>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut next_id = 0usize;
    loop {
        let accepted = tokio::select! {
            // Stopping comes first: a connection accepted now would only be closed unanswered.
            biased;
            () = state.lifecycle.stop.cancelled() => break,
            Some(new) = rebound.recv() => {
                listener = new;
                continue;
            }
            accepted = listener.inner().accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(limit = MAX_CONNECTIONS, "connection refused: too many connections");
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let (reader, writer) = stream.into_split();
        let (state2, methods) = (State::clone(&state), methods.clone());
        let id = next_id;
        state.lifecycle.tasks.spawn(async move {
            let peer = connection::Peer { id, transport: "socket", token: None, eof_ends_session: false };
            connection::serve(state2, methods, peer, reader, writer, DEFAULT_MAX_FRAME).await;
            drop(slot);
        });
    }
}
