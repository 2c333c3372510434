//! The TCP transport (opt-in: `mcli-server start --tcp ADDR`). Every connection must open with
//! `authenticate {token}` (the token of the server file) within a few seconds; nothing runs
//! before that. Loopback unless told otherwise.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::{Limit, Peer, Transports};

/// Connections served at once on TCP.
const MAX_CONNECTIONS: usize = 2048;

/// Binds `addr` (`HOST:PORT`; port 0 picks a free one).
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let listener =
        TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on TCP address {addr}: {e}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "TCP listens beyond loopback; every connection must present the token");
    }
    Ok(listener)
}

/// Serves TCP connections until the server stops; each must first present `token`.
pub async fn serve(transports: Transports, listener: TcpListener, token: Arc<str>) {
    let served = transports.clone();
    let serve = move |stream: TcpStream, id| {
        let _ = stream.set_nodelay(true);
        keep_alive(&stream);
        let (reader, writer) = stream.into_split();
        let peer = Peer { id, transport: "tcp", token: Some(Arc::clone(&token)) };
        super::serve(served.clone(), peer, reader, writer)
    };
    transports.accept_loop("tcp", listener, Limit::Refuse(MAX_CONNECTIONS), serve).await;
}

/// Turns on keepalive probes. A peer that closed entirely looks like a half-close (both send
/// FIN) until the server writes to it; for a command that writes nothing, the probes do the
/// writing: once the peer's side of the connection is gone (the kernel keeps it about a minute
/// after the close), a probe draws a reset, the connection shows as hung up and its requests
/// end. A peer whose host vanished is noticed after 20 s of unanswered probes.
fn keep_alive(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let set = setsockopt(stream, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepIdle, &5))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepInterval, &5))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepCount, &3));
    if let Err(err) = set {
        tracing::debug!(%err, "cannot turn on TCP keepalive");
    }
}
