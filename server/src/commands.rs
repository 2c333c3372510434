//! The live command registry. It is scanned at start and again after a watched commands dir
//! changes (inotify through `notify`), so added, changed and removed commands are seen without
//! a restart and without reading the disk on every call.
//!
//! Rescans happen on a thread of their own, never on the request path: the watcher's callback
//! only counts the change and wakes that thread. A lookup that comes after a change waits
//! (asynchronously, briefly) for the rescan that covers it, so a command written just before a
//! call is found by that call.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::time::Duration;

use mcli_shared::registry::Registry;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// How long a lookup waits for a pending rescan before it goes on with the registry it has.
const RESCAN_WAIT: Duration = Duration::from_secs(2);

pub struct Commands {
    shared: Arc<Shared>,
    /// Wakes the rescan thread; [`Wake::Stop`] when the registry is dropped.
    wake: mpsc::Sender<Wake>,
}

enum Wake {
    Changed,
    Stop,
}

struct Shared {
    /// The commands dirs; a reload of the config may change them.
    dirs: RwLock<Vec<PathBuf>>,
    /// The registry and its generation, bumped at every rescan; the generation is part of cache
    /// keys, so a changed command never serves an old result.
    current: RwLock<(Arc<Registry>, u64)>,
    /// Changes noticed so far.
    changes: AtomicU64,
    /// Changes that the current registry covers.
    covered: AtomicU64,
    /// Woken after every rescan.
    rescanned: Notify,
}

impl Commands {
    /// Scans `dirs` and starts the thread that watches them and rescans after changes.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        let shared = Arc::new(Shared {
            current: RwLock::new((Arc::new(Registry::scan(&dirs)), 0)),
            dirs: RwLock::new(dirs),
            changes: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            rescanned: Notify::new(),
        });
        let (wake, woken) = mpsc::channel();
        let watcher = watch(&shared, wake.clone());
        let (rescanner, rewatch) = (Arc::clone(&shared), wake.clone());
        let started = std::thread::Builder::new()
            .name("commands".into())
            .spawn(move || rescan_loop(&rescanner, watcher, &rewatch, &woken));
        if let Err(err) = started {
            tracing::warn!(%err, "cannot start the commands watcher; changes need a restart");
        }
        Commands { shared, wake }
    }

    /// Searches `dirs` from now on: watched and scanned anew before the next lookup.
    pub fn set_dirs(&self, dirs: Vec<PathBuf>) {
        *self.shared.dirs.write().unwrap_or_else(|p| p.into_inner()) = dirs;
        self.shared.changes.fetch_add(1, Ordering::SeqCst);
        let _ = self.wake.send(Wake::Changed);
    }

    /// The registry as of now (after the rescan of any change noticed before this call) and
    /// its generation.
    pub async fn current(&self) -> (Arc<Registry>, u64) {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + RESCAN_WAIT;
        // The changes seen when this call came, not those that keep coming (a file written
        // steadily in a commands dir must not hold every lookup up).
        let target = shared.changes.load(Ordering::SeqCst);
        loop {
            let rescanned = shared.rescanned.notified();
            if shared.covered.load(Ordering::SeqCst) >= target {
                break;
            }
            if tokio::time::timeout_at(deadline, rescanned).await.is_err() {
                break;
            }
        }
        let current = shared.current.read().unwrap_or_else(|p| p.into_inner());
        (Arc::clone(&current.0), current.1)
    }
}

/// Rescans after each wake-up (coalescing the ones that queued up meanwhile) until the watcher
/// is gone. Watching again first: a dir may have been created, and changes from then on must
/// wake the next rescan.
fn rescan_loop(
    shared: &Arc<Shared>,
    mut watcher: Option<RecommendedWatcher>,
    wake: &mpsc::Sender<Wake>,
    woken: &mpsc::Receiver<Wake>,
) {
    while let Ok(Wake::Changed) = woken.recv() {
        if woken.try_iter().any(|w| matches!(w, Wake::Stop)) {
            break;
        }
        let seen = shared.changes.load(Ordering::SeqCst);
        // Replacing the watcher drops the old one, whose callback holds a sender too.
        watcher = watch(shared, wake.clone()).or(watcher);
        let dirs = shared.dirs.read().unwrap_or_else(|p| p.into_inner()).clone();
        let fresh = Arc::new(Registry::scan(&dirs));
        {
            let mut current = shared.current.write().unwrap_or_else(|p| p.into_inner());
            *current = (fresh, current.1 + 1);
        }
        shared.covered.store(seen, Ordering::SeqCst);
        shared.rescanned.notify_waiters();
        tracing::debug!("commands rescanned");
    }
    drop(watcher);
}

/// A watcher of each commands dir, or for one that does not exist yet, of the nearest existing
/// ancestor, so that its creation is noticed. Each change is counted and wakes the rescan.
fn watch(shared: &Arc<Shared>, wake: mpsc::Sender<Wake>) -> Option<RecommendedWatcher> {
    let counter = Arc::clone(shared);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a command (running a script, scanning a manifest) is no change.
        if event.is_ok_and(|e| !e.kind.is_access()) {
            counter.changes.fetch_add(1, Ordering::SeqCst);
            let _ = wake.send(Wake::Changed);
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!(%err, "cannot watch the commands dirs; changes need a restart");
            return None;
        }
    };
    let dirs = shared.dirs.read().unwrap_or_else(|p| p.into_inner()).clone();
    for dir in &dirs {
        let Some(target) = nearest_existing(dir) else { continue };
        if let Err(err) = watcher.watch(&target, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %target.display(), %err, "cannot watch a commands dir");
        }
    }
    Some(watcher)
}

impl Drop for Commands {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
    }
}

fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
}
