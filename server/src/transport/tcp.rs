//! The TCP listener (opt-in: `mcli-server start --tcp ADDR`). Every connection must open with
//! `authenticate {token}` (the token of the server file) within a few seconds; nothing runs
//! before that. Loopback unless told otherwise.

use std::sync::Arc;

use jsonrpsee::Methods;
use mcli_protocol::framing::DEFAULT_MAX_FRAME;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::connection::{self, Peer};
use super::socket::MAX_CONNECTIONS;
use crate::state::State;

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

pub async fn accept_loop(state: State, methods: Methods, listener: TcpListener, token: Arc<str>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut next_id = 1_000_000usize;
    loop {
        let accepted = tokio::select! {
            biased;
            () = state.lifecycle.stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%from, "TCP connection refused: too many connections");
            tokio::spawn(super::socket::refuse_busy(stream));
            continue;
        };
        next_id += 1;
        let _ = stream.set_nodelay(true);
        keep_alive(&stream);
        let (reader, writer) = stream.into_split();
        let peer = Peer { id: next_id, transport: "tcp", token: Some(Arc::clone(&token)), eof_ends_session: false };
        let (state2, methods) = (State::clone(&state), methods.clone());
        state.lifecycle.tasks.spawn(async move {
            connection::serve(state2, methods, peer, reader, writer, DEFAULT_MAX_FRAME).await;
            drop(slot);
        });
    }
}

/// Turns on keepalive probes. A peer that closed entirely looks like a half-close (both send
/// FIN) until the server writes to it; for a command that writes nothing, the probes do the
/// writing: once the peer's side of the connection is gone (the kernel keeps it about a minute
/// after the close), a probe draws a reset, the connection shows as hung up and its requests
/// end. A peer whose host vanished is noticed after 20 s of unanswered probes.
fn keep_alive(stream: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let set = setsockopt(stream, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepIdle, &5))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepInterval, &5))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepCount, &3));
    if let Err(err) = set {
        tracing::debug!(%err, "cannot turn on TCP keepalive");
    }
}
