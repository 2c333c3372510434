//! The server's listening sockets, kept as duplicates for a hand-over to a successor
//! (`handover.rs`), each under the name the successor knows it by.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Mutex;

/// Duplicates of the server's listening sockets, kept for a hand-over, each with the name the
/// successor knows it by (`socket`, `tcp`, `http`).
#[derive(Default)]
pub struct Listeners {
    fds: Mutex<Vec<(&'static str, OwnedFd)>>,
    /// This server was started on demand; its successor idles out as it would have.
    auto_started: std::sync::atomic::AtomicBool,
    /// Held during a hand-over: one at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Listeners {
    /// Keeps a duplicate of `listener` under `name`, replacing an older one of that name (the
    /// socket bound anew after its file was removed).
    pub fn keep(&self, name: &'static str, listener: BorrowedFd<'_>) {
        match listener.try_clone_to_owned() {
            Ok(fd) => {
                let mut fds = self.fds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                fds.retain(|(kept, _)| *kept != name);
                fds.push((name, fd));
            }
            Err(err) => tracing::warn!(%err, name, "cannot keep the listener for a restart"),
        }
    }

    /// Forgets the listener named `name` (the HTTP bridge switched off or moved).
    pub fn forget(&self, name: &str) {
        self.fds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|(kept, _)| *kept != name);
    }

    pub fn set_auto_started(&self, auto_started: bool) {
        self.auto_started.store(auto_started, std::sync::atomic::Ordering::Relaxed);
    }

    /// The turn of one hand-over; `Err` while another is under way.
    pub fn one_at_a_time(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, tokio::sync::TryLockError> {
        self.busy.try_lock()
    }

    /// Whether this server was started on demand by a client.
    pub fn auto_started(&self) -> bool {
        self.auto_started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Duplicates of the kept listeners, for a successor.
    pub fn duplicates(&self) -> std::io::Result<Vec<(&'static str, OwnedFd)>> {
        let fds = self.fds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        fds.iter().map(|(name, fd)| Ok((*name, fd.try_clone()?))).collect()
    }
}
