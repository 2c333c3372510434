//! Execution ids: unique and increasing among every process that writes one history (a daemon
//! and `--stdio` sessions), handed out from blocks that the history reserves. The next block is
//! fetched ahead, off the async threads, when the current one is half used.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::history::{History, ID_BLOCK};

pub struct Ids {
    history: Option<Arc<History>>,
    /// The ids this server may still hand out.
    current: Mutex<Range<u64>>,
    /// The next block, once fetched.
    spare: Arc<Mutex<Option<Range<u64>>>>,
}

impl Ids {
    /// Ids from `first` on; more blocks come from `history` when there is one (without one,
    /// the range runs to the end).
    pub fn new(history: Option<Arc<History>>, first: Range<u64>) -> Ids {
        Ids { history, current: Mutex::new(first), spare: Arc::new(Mutex::new(None)) }
    }

    /// The next id. Waits for the history only when a burst used up a block before the next
    /// one arrived, and then off the async threads.
    pub async fn next(&self) -> u64 {
        if let Some(id) = self.take() {
            return id;
        }
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let fresh = match spare {
            Some(block) => Some(block),
            None => self.reserve().await,
        };
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_empty() {
            // No history (or it failed): go on past the last block; nobody else takes those.
            *current = fresh.unwrap_or(current.end..u64::MAX);
        } else if let Some(fresh) = fresh {
            // Another call refilled the block meanwhile: keep this one for later.
            self.spare.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(fresh);
        }
        let id = current.start;
        current.start += 1;
        id
    }

    /// Takes an id from the current block, fetching the next block ahead when it is half used.
    fn take(&self) -> Option<u64> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_empty() {
            return None;
        }
        let id = current.start;
        current.start += 1;
        if current.end - current.start == ID_BLOCK / 2 {
            self.prefetch();
        }
        Some(id)
    }

    fn prefetch(&self) {
        let Some(history) = self.history.clone() else { return };
        let spare = Arc::clone(&self.spare);
        tokio::task::spawn_blocking(move || {
            if let Some(block) = history.reserve() {
                *spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(block);
            }
        });
    }

    async fn reserve(&self) -> Option<Range<u64>> {
        let history = self.history.clone()?;
        tokio::task::spawn_blocking(move || history.reserve()).await.ok().flatten()
    }
}
