//! The transports: how clients reach the method table. Every transport shares one
//! [`Transports`] (the server's lifecycle, the table, and one counter of connection ids) and one
//! accept loop with a bound on connections ([`Transports::accept_loop`]). Every stream transport
//! serves a connection with [`serve`]: authentication where the transport asks for it, then the
//! message loop, then the wait for the requests still in flight.
//!
//! Inside: `connection` (framing, writer, message loop), `auth` (the first step on TCP),
//! `hangup` (telling a gone peer from a half-close), `dispatch` (a JSON-RPC message or a typed
//! call to a method, and the request context it creates), `context` (what the requests of one
//! connection share), `stdin` and `recent` (their bookkeeping), and one module per transport:
//! `socket`, `tcp`, `stdio` and `http`.

pub mod auth;
pub mod connection;
pub mod context;
pub mod dispatch;
pub mod fds;
pub mod hangup;
pub mod http;
pub mod recent;
pub mod socket;
pub mod stdin;
pub mod stdio;
pub mod tcp;
pub mod terminal;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonrpsee::Methods;
use mcli_protocol::code;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use self::connection::Connection;
use self::dispatch::error_reply;
use self::hangup::Hangup;
use crate::lifecycle::Lifecycle;

/// What the transports of one server share. Cheap to clone.
#[derive(Clone)]
pub struct Transports {
    /// Stops the accept loops, closes the connections, and tracks their tasks.
    pub lifecycle: Arc<Lifecycle>,
    /// The method table every transport dispatches to.
    pub methods: Methods,
    /// The last connection id handed out: one counter for every transport, so that an id names
    /// one connection in the logs whichever way it came.
    last_id: Arc<AtomicUsize>,
}

/// Refused connections whose input is read to its end before they are closed (the rest are
/// closed as soon as they are told).
const MAX_REFUSING: usize = 64;
/// How long, and how many bytes of a refused connection's input are read before it is closed.
const REFUSE_DRAIN: Duration = Duration::from_secs(2);
const REFUSE_DRAIN_BYTES: usize = 64 * 1024;

/// How many connections a listener serves at once, and what a connection over that gets.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Accept it, answer one `server busy` error line, and close it: a JSON-RPC client learns why.
    /// What the client sent is read first: closing a socket with unread input resets the
    /// connection, and a reset throws away the answer before the client reads it.
    Refuse(usize),
    /// Accept nothing until a slot is free: further connections wait in the kernel's backlog.
    Wait(usize),
}

/// A listener that the accept loop takes connections from.
pub trait Listen: Send {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection. It must be cancel-safe: the loop drops it when the server stops.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<tokio::net::TcpStream> {
        tokio::net::TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

impl Transports {
    pub fn new(lifecycle: Arc<Lifecycle>, methods: Methods) -> Self {
        Transports { lifecycle, methods, last_id: Arc::new(AtomicUsize::new(0)) }
    }

    /// A connection id not handed out before.
    pub fn next_id(&self) -> usize {
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Accepts connections on `listener` until the server stops, and runs `serve` on each (with
    /// its id) in a task of its own, at most `limit` at once.
    pub async fn accept_loop<L, F, Fut>(&self, transport: &'static str, mut listener: L, limit: Limit, mut serve: F)
    where
        L: Listen,
        F: FnMut(L::Stream, usize) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = &self.lifecycle.stop;
        let max = match limit {
            Limit::Refuse(max) | Limit::Wait(max) => max,
        };
        let slots = Arc::new(Semaphore::new(max));
        let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
        loop {
            let waited = match limit {
                Limit::Refuse(_) => None,
                Limit::Wait(_) => tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => Some(slot),
                        Err(_) => break,
                    },
                },
            };
            let accepted = tokio::select! {
                // Stopping comes first: a connection accepted now would only be closed unanswered.
                biased;
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(err) => {
                    // Out of descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(transport, %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = waited.or_else(|| Arc::clone(&slots).try_acquire_owned().ok()) else {
                tracing::warn!(transport, limit = max, "connection refused: too many connections");
                tokio::spawn(refuse_busy(stream, max, Arc::clone(&refusing).try_acquire_owned().ok()));
                continue;
            };
            let served = serve(stream, self.next_id());
            let open = crate::metrics::connection_opened(transport);
            self.lifecycle.tasks.spawn(async move {
                served.await;
                drop(open);
                drop(slot);
            });
        }
    }
}

/// Tells a connection over the limit so (one error line) and ends its sending side; then, with
/// a `drain` permit, reads what the client sends until it closes (bounded in time and bytes),
/// so that closing does not reset the connection before the client has read the answer.
async fn refuse_busy<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    limit: usize,
    drain: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let message = format!("server busy: too many connections (limit {limit}); try again later");
    let mut reply = error_reply("null", code::SERVER_BUSY, &message);
    reply.push(b'\n');
    if stream.write_all(&reply).await.is_err() || stream.shutdown().await.is_err() || drain.is_none() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut left = REFUSE_DRAIN_BYTES;
    let read_to_end = async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_DRAIN, read_to_end).await;
}

/// Who is at the other end of a stream connection, and what its transport asks of it.
pub struct Peer {
    pub id: usize,
    /// `socket`, `stdio` or `tcp`, for the logs and the history.
    pub transport: &'static str,
    /// The token the first message must present (`authenticate`), on transports that need one.
    pub token: Option<Arc<str>>,
}

/// Serves one stream connection until the peer has finished sending, its framing breaks, or
/// the server closes connections at the end of shutdown.
pub async fn serve<R, W>(transports: Transports, peer: Peer, reader: R, writer: W)
where
    R: AsyncRead + Hangup + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _busy = transports.lifecycle.busy();
    let mut connection = Connection::new(&transports.lifecycle, peer.id, peer.transport, reader, writer);
    tracing::debug!(connection = peer.id, "connected");
    let admitted = match &peer.token {
        Some(token) => auth::authenticate(&mut connection, token).await,
        None => true,
    };
    if admitted {
        connection.serve_messages(&transports.methods).await;
        connection.refuse_while_closing().await;
    }
    connection.finish().await;
    tracing::debug!(connection = peer.id, "closed");
}
