//! The live command registry. It is scanned at start and again, on the next lookup, after a
//! watched commands dir changes (inotify through `notify`), so added, changed and removed
//! commands are seen without a restart and without reading the disk on every call.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use mcli_shared::registry::Registry;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

pub struct Commands {
    dirs: Vec<PathBuf>,
    current: RwLock<Arc<Registry>>,
    /// Set by the watcher when something in a commands dir changed.
    dirty: Arc<AtomicBool>,
    /// Bumped at every rescan; part of cache keys, so a changed command never serves an old
    /// result.
    generation: AtomicU64,
    watcher: Mutex<Option<RecommendedWatcher>>,
}

impl Commands {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        let commands = Commands {
            current: RwLock::new(Arc::new(Registry::scan(&dirs))),
            dirs,
            dirty: Arc::new(AtomicBool::new(false)),
            generation: AtomicU64::new(0),
            watcher: Mutex::new(None),
        };
        commands.watch();
        commands
    }

    /// The registry as of now, rescanned first if the commands dirs changed.
    pub fn current(&self) -> (Arc<Registry>, u64) {
        if self.dirty.swap(false, Ordering::SeqCst) {
            // Watch again first: a dir may have been created, and events from now on must set
            // the flag for the next lookup.
            self.watch();
            let fresh = Arc::new(Registry::scan(&self.dirs));
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
            self.generation.fetch_add(1, Ordering::SeqCst);
            tracing::debug!("commands rescanned");
        }
        let registry = Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()));
        (registry, self.generation.load(Ordering::SeqCst))
    }

    /// (Re)creates the watcher: each commands dir, or for one that does not exist yet, the
    /// nearest existing ancestor, so that its creation is noticed.
    fn watch(&self) {
        let dirty = Arc::clone(&self.dirty);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reading a command (running a script, scanning a manifest) is no change.
            if event.is_ok_and(|e| !e.kind.is_access()) {
                dirty.store(true, Ordering::SeqCst);
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(err) => {
                tracing::warn!(%err, "cannot watch the commands dirs; changes need a restart");
                return;
            }
        };
        for dir in &self.dirs {
            let Some(target) = nearest_existing(dir) else { continue };
            if let Err(err) = watcher.watch(&target, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %target.display(), %err, "cannot watch a commands dir");
            }
        }
        *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
    }
}

fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
}
