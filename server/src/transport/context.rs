//! What the requests of one connection share: the ordered, bounded queue of what goes out to
//! the peer, the cancellation tokens of the requests in flight (with the bookkeeping that lets a
//! `$/cancelRequest` overtake its request), the routes of streamed standard input, and the
//! terminal side (passed streams, signal routes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::recent::RecentKeys;
use super::stdin::StdinRoutes;
use super::terminal::Terminal;
use crate::lifecycle::Lifecycle;

/// Messages queued for writing; producers (streamed output) wait beyond it.
const OUTGOING_QUEUE: usize = 64;

/// What the request handlers of one connection share.
pub struct ConnectionCtx {
    /// The connection's id, unique across transports, for the logs.
    pub id: usize,
    /// Replies and notifications on their way to the peer, in order; bounded, so a slow peer
    /// slows its commands' output down instead of filling memory.
    pub outgoing: mpsc::Sender<Bytes>,
    /// Whether `execute` streams output by default (stream transports) or returns it (HTTP).
    pub stream_by_default: bool,
    /// The transport's name, for the history.
    pub transport: &'static str,
    /// Streamed standard input on its way to this connection's `execute` requests.
    pub stdin: Arc<StdinRoutes>,
    /// Passed standard streams and the process groups that forwarded signals reach.
    pub terminal: Arc<Terminal>,
    /// Cancelled when the connection fails or the server aborts; parent of every request's token.
    cancel: CancellationToken,
    requests: Mutex<Requests>,
}

/// The requests of a connection, by id (as JSON text).
#[derive(Default)]
struct Requests {
    /// Cancellation tokens of the requests in flight.
    running: HashMap<String, CancellationToken>,
    /// Ids whose `$/cancelRequest` came before the request was registered (bounded).
    cancelled_early: RecentKeys,
    /// Ids of requests that have ended, so a late cancel is not kept for a reused id (bounded).
    finished: RecentKeys,
}

impl ConnectionCtx {
    /// A connection's context and the receiving end of its outgoing queue.
    pub fn new(
        lifecycle: &Lifecycle,
        id: usize,
        transport: &'static str,
        stream_by_default: bool,
    ) -> (Arc<ConnectionCtx>, mpsc::Receiver<Bytes>) {
        Self::with_terminal(lifecycle, id, transport, stream_by_default, Terminal::default())
    }

    /// [`ConnectionCtx::new`] for a connection that may pass descriptors (see [`Terminal::new`]).
    pub fn with_terminal(
        lifecycle: &Lifecycle,
        id: usize,
        transport: &'static str,
        stream_by_default: bool,
        terminal: Terminal,
    ) -> (Arc<ConnectionCtx>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel::<Bytes>(OUTGOING_QUEUE);
        let ctx = ConnectionCtx {
            id,
            outgoing: tx,
            stream_by_default,
            transport,
            stdin: Arc::new(StdinRoutes::default()),
            terminal: Arc::new(terminal),
            cancel: lifecycle.abort.child_token(),
            requests: Mutex::new(Requests::default()),
        };
        (Arc::new(ctx), rx)
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers request `key` as running; its token ends it.
    pub fn register_request(&self, key: &str) -> CancellationToken {
        let token = self.cancel.child_token();
        let mut requests = self.requests();
        // A cancel that overtook its request (each runs in a task of its own) applies now.
        if requests.cancelled_early.remove(key) {
            token.cancel();
        }
        requests.running.insert(key.to_owned(), token.clone());
        token
    }

    /// Marks request `key` as ended.
    pub fn unregister_request(&self, key: &str) {
        let mut requests = self.requests();
        requests.running.remove(key);
        requests.finished.insert(key);
    }

    /// The token that ends every request of this connection, as when its peer hangs up.
    pub fn hang_up_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Ends every request of this connection: its peer is gone.
    pub fn hang_up(&self) {
        self.cancel.cancel();
    }

    /// Cancels request `key` (`$/cancelRequest`): now if it runs, at its registration if it has
    /// not been registered yet.
    pub fn cancel_request(&self, key: &str) {
        let mut requests = self.requests();
        if let Some(token) = requests.running.get(key) {
            token.cancel();
        } else if !requests.finished.contains(key) {
            requests.cancelled_early.insert(key);
        }
    }
}
