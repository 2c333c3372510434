//! Routing of streamed standard input (`mcli/stdin` notifications) to the `execute` request it
//! belongs to. The connection's reader delivers chunks in order; the request claims its
//! receiving end. Either may come first, so whichever does creates the route. Every queue is
//! bounded: a command that does not read its input slows the sender down.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::recent::RecentKeys;

/// Requests of one connection with stdin routes open at once; chunks for more are dropped.
const MAX_ROUTES: usize = 64;
/// Chunks queued for one command.
const QUEUE: usize = 8;

#[derive(Default)]
pub struct StdinRoutes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    routes: HashMap<String, Route>,
    finished: RecentKeys,
}

struct Route {
    /// Dropped at end of input.
    tx: Option<mpsc::Sender<Bytes>>,
    /// Taken by the request.
    rx: Option<mpsc::Receiver<Bytes>>,
}

impl Route {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Route { tx: Some(tx), rx: Some(rx) }
    }
}

impl StdinRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The receiving end for request `key`; `None` if it was claimed already.
    pub fn claim(&self, key: &str) -> Option<mpsc::Receiver<Bytes>> {
        let mut inner = self.lock();
        inner.routes.entry(key.to_owned()).or_insert_with(Route::new).rx.take()
    }

    /// Where chunks for request `key` go; `None` when they are to be dropped (the request
    /// finished, its input ended, or too many routes are open).
    pub fn sender(&self, key: &str) -> Option<mpsc::Sender<Bytes>> {
        let mut inner = self.lock();
        if inner.finished.contains(key) {
            return None;
        }
        if !inner.routes.contains_key(key) && inner.routes.len() >= MAX_ROUTES {
            tracing::warn!(request = key, "stdin dropped: too many open stdin routes");
            return None;
        }
        inner.routes.entry(key.to_owned()).or_insert_with(Route::new).tx.clone()
    }

    /// Ends the input of request `key`.
    pub fn close(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(route) = inner.routes.get_mut(key) {
            route.tx = None;
        }
    }

    /// Forgets request `key` when it finishes; later chunks for it are dropped.
    pub fn release(&self, key: &str) {
        let mut inner = self.lock();
        inner.routes.remove(key);
        inner.finished.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_sent_before_the_claim_arrive_then_eof() {
        let routes = StdinRoutes::default();
        let tx = routes.sender("1").unwrap();
        tx.send(Bytes::from_static(b"ab")).await.unwrap();
        drop(tx);
        routes.close("1");
        let mut rx = routes.claim("1").unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"ab"));
        assert_eq!(rx.recv().await, None);
        routes.release("1");
        assert!(routes.sender("1").is_none(), "late chunks are dropped");
    }
}
