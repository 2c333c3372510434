//! The server's shared state behind a cheap-clone handle: configuration, registry, counters, the
//! table of running commands, and the tokens that drive shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use mcli_protocol::{ActiveCommand, ExecStatus};
use mcli_shared::config::Config;
use mcli_shared::paths::ServerPaths;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::ResultCache;
use crate::commands::Commands;
use crate::history::History;

/// How long a graceful shutdown lets running commands finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub type State = Arc<Inner>;

pub struct Inner {
    pub config: Config,
    pub paths: ServerPaths,
    pub commands: Commands,
    pub cache: ResultCache,
    /// The warm workers of worker commands.
    pub workers: crate::workers::Workers,
    /// The persistent history, unless `enable_command_history` is off.
    pub history: Option<History>,
    /// The TCP address listened on, if any.
    pub tcp: Option<String>,
    /// The HTTP bridge's address, if it is on.
    pub http: Option<String>,
    /// One permit per command allowed to run at once (`max_concurrent_commands`).
    pub slots: Arc<Semaphore>,
    /// Commands waiting for a slot.
    pub queued: AtomicUsize,
    pub started: Instant,
    /// The execution ids this server may still hand out; more come from the history.
    ids: Mutex<std::ops::Range<u64>>,
    /// The next block of ids, fetched ahead when the current one is half used.
    spare_ids: Arc<Mutex<Option<std::ops::Range<u64>>>>,
    pub executed_total: AtomicU64,
    pub failed_total: AtomicU64,
    active: Mutex<BTreeMap<u64, Running>>,
    /// Woken whenever a command ends, so shutdown can wait for the last one.
    command_ended: Notify,
    shutting_down: AtomicBool,
    /// Cancelled when the server should stop: the listener stops accepting.
    pub stop: CancellationToken,
    /// Cancelled when running commands must end now (grace over, or a non-graceful shutdown).
    pub abort: CancellationToken,
    /// Cancelled when connections should close, after their last responses are written.
    pub close_connections: CancellationToken,
    /// Every connection and request task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Set by a non-graceful `shutdown`: skip the grace period.
    immediate: AtomicBool,
    /// Open client connections, for the idle timeout.
    connections: AtomicUsize,
    /// When a connection or a command last ended (or a connection began).
    last_busy: Mutex<Instant>,
}

struct Running {
    command: String,
    started: SystemTime,
    /// Ends the command, for `cancel`.
    cancel: CancellationToken,
}

impl Inner {
    pub fn new(
        config: Config,
        paths: ServerPaths,
        commands: Commands,
        history: Option<History>,
        ids: std::ops::Range<u64>,
        tcp: Option<String>,
        http: Option<String>,
    ) -> State {
        Arc::new(Inner {
            history,
            tcp,
            http,
            slots: Arc::new(Semaphore::new(config.api_daemon.max_concurrent_commands)),
            queued: AtomicUsize::new(0),
            cache: ResultCache::default(),
            workers: crate::workers::Workers::default(),
            config,
            paths,
            commands,
            started: Instant::now(),
            ids: Mutex::new(ids),
            spare_ids: Arc::new(Mutex::new(None)),
            executed_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
            active: Mutex::new(BTreeMap::new()),
            command_ended: Notify::new(),
            shutting_down: AtomicBool::new(false),
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            close_connections: CancellationToken::new(),
            tasks: TaskTracker::new(),
            immediate: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            last_busy: Mutex::new(Instant::now()),
        })
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Starts shutting down; a second, non-graceful request skips the grace period.
    pub fn begin_shutdown(&self, graceful: bool) {
        if !graceful {
            self.immediate.store(true, Ordering::SeqCst);
            self.abort.cancel();
        }
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop.cancel();
        self.command_ended.notify_waiters();
    }

    fn active(&self) -> MutexGuard<'_, BTreeMap<u64, Running>> {
        // A panic while the lock was held cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is safe to keep using.
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a command as running; the returned guard unregisters it and counts its end.
    pub fn begin_execution(self: &Arc<Self>, command: &str, cancel: CancellationToken) -> ExecutionGuard {
        let id = self.next_id();
        self.prefetch_ids();
        self.active().insert(id, Running { command: command.to_owned(), started: SystemTime::now(), cancel });
        ExecutionGuard { state: Arc::clone(self), id, status: None }
    }

    fn touch(&self) {
        *self.last_busy.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
        self.touch();
    }

    /// How long the server has had no connection and no running command (zero while it has).
    pub fn idle_for(&self) -> Duration {
        if self.connections.load(Ordering::SeqCst) > 0 || !self.active().is_empty() {
            return Duration::ZERO;
        }
        self.last_busy.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// The next execution id: unique among all the processes that write this history.
    fn next_id(&self) -> u64 {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.is_empty() {
            // Normally the block fetched ahead; else (a burst) wait for the writer to take one.
            let spare = self.spare_ids.lock().unwrap_or_else(|p| p.into_inner()).take();
            let fresh = spare.or_else(|| self.history.as_ref().and_then(History::reserve));
            *ids = fresh.unwrap_or(ids.end..u64::MAX);
        }
        let id = ids.start;
        ids.start += 1;
        id
    }

    /// When the current block of ids is half used, fetches the next one off the async threads.
    fn prefetch_ids(self: &Arc<Self>) {
        let left = {
            let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
            ids.end.saturating_sub(ids.start)
        };
        if self.history.is_none() || left != crate::history::ID_BLOCK / 2 {
            return;
        }
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Some(block) = state.history.as_ref().and_then(History::reserve) {
                *state.spare_ids.lock().unwrap_or_else(|p| p.into_inner()) = Some(block);
            }
        });
    }

    /// Cancels the running execution `id`; false when none runs with that id.
    pub fn cancel_execution(&self, id: u64) -> bool {
        match self.active().get(&id) {
            Some(run) => {
                run.cancel.cancel();
                true
            }
            None => false,
        }
    }

    pub fn active_commands(&self) -> Vec<ActiveCommand> {
        self.active()
            .iter()
            .map(|(id, run)| ActiveCommand { id: *id, command: run.command.clone(), started: rfc3339(run.started) })
            .collect()
    }

    /// Waits until no command runs, or until `grace` has passed (or shutdown turned immediate).
    pub async fn wait_for_commands(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let ended = self.command_ended.notified();
            if self.active().is_empty() || self.immediate.load(Ordering::SeqCst) {
                return;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return;
            }
        }
    }
}

/// Keeps a command in the table of running commands while it runs.
pub struct ExecutionGuard {
    state: State,
    pub id: u64,
    status: Option<ExecStatus>,
}

impl ExecutionGuard {
    /// Records how the command ended, for the counters.
    pub fn finish(mut self, status: ExecStatus) {
        self.status = Some(status);
    }
}

impl Drop for ExecutionGuard {
    fn drop(&mut self) {
        self.state.active().remove(&self.id);
        self.state.executed_total.fetch_add(1, Ordering::Relaxed);
        if self.status != Some(ExecStatus::Completed) {
            self.state.failed_total.fetch_add(1, Ordering::Relaxed);
        }
        self.state.command_ended.notify_waiters();
        self.state.touch();
    }
}

/// Formats a time as RFC 3339 in UTC with second precision.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
