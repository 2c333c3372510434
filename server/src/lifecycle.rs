//! The server's life from start to exit: the tokens that drive shutdown, the tracker of every
//! connection and request task, and the idle clock. Transports and the shutdown sequence need
//! this and nothing else of the server's state.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a graceful shutdown lets running commands finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a server that handed its listeners over lets its running commands finish: nobody
/// waits for it to exit (its successor serves), so it can let longer commands end on their own.
pub const HANDOVER_GRACE: Duration = Duration::from_secs(300);

pub struct Lifecycle {
    started: Instant,
    /// Cancelled when the server should stop: the listeners stop accepting.
    pub stop: CancellationToken,
    /// Cancelled when running commands must end now (grace over, or a non-graceful shutdown).
    pub abort: CancellationToken,
    /// Cancelled when connections should close, after their last responses are written.
    pub close_connections: CancellationToken,
    /// Every connection and request task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    shutting_down: AtomicBool,
    /// Set by a non-graceful shutdown: skip the grace period.
    immediate: AtomicBool,
    /// Set when the listeners were handed to a new server (`restart`): this one stops accepting
    /// and finishes what it runs, and leaves the socket file to its successor.
    handed_over: AtomicBool,
    /// Open connections and running commands, for the idle timeout.
    busy: AtomicUsize,
    /// When something last stopped being busy (or the server started).
    last_busy: Mutex<Instant>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            started: Instant::now(),
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            close_connections: CancellationToken::new(),
            tasks: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
            immediate: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            last_busy: Mutex::new(Instant::now()),
        }
    }
}

impl Lifecycle {
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether a non-graceful shutdown asked to skip the grace period.
    pub fn is_immediate(&self) -> bool {
        self.immediate.load(Ordering::SeqCst)
    }

    /// Starts shutting down; a non-graceful request (even after a graceful one) ends running
    /// commands at once.
    pub fn begin_shutdown(&self, graceful: bool) {
        if !graceful {
            self.immediate.store(true, Ordering::SeqCst);
            self.abort.cancel();
        }
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    /// Stops this server after its listeners went to a successor: it accepts nothing more,
    /// lets running commands finish (within [`HANDOVER_GRACE`]) and keeps the socket file.
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::SeqCst);
        self.begin_shutdown(true);
    }

    /// Marks a hand-over under way (or failed: `false`), during which the name guard leaves
    /// the server file to the successor.
    pub fn set_handing_over(&self, on: bool) {
        self.handed_over.store(on, Ordering::SeqCst);
    }

    pub fn is_handed_over(&self) -> bool {
        self.handed_over.load(Ordering::SeqCst)
    }

    /// Marks the server busy (an open connection, a running command) until the guard drops.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.touch();
        BusyGuard(Arc::clone(self))
    }

    fn touch(&self) {
        *self.last_busy.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// How long the server has had no connection and no running command (zero while it has).
    pub fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.last_busy.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

/// Keeps the server from counting as idle while it lives.
pub struct BusyGuard(Arc<Lifecycle>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}
