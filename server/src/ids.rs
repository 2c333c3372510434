//! Execution ids: unique among every process that shares a server name (a daemon and its
//! `--stdio` sessions write one history), whatever fails. An id is handed out only from a block
//! that is durably reserved first:
//!
//! - normally in the history, whose counter hands out blocks of [`ID_BLOCK`] from 1 upwards;
//! - when the history is off or cannot be written (a full disk), in a small counter file in the
//!   runtime dir, `NAME.ids`, whose blocks lie at [`SPARE_BASE`] and above, where the history's
//!   counter never gets. A fresh counter file starts at a floor that grows with the wall clock
//!   (2^20 ids a second since 2026), so blocks of an earlier boot, whose runtime dir is gone,
//!   are never handed out again.
//!
//! Ids stay under 2^53, so that every JSON client (JavaScript, Lua) reads them exactly. The next
//! block is fetched ahead, off the async threads, when the current one is half used.

use std::io::{Read, Seek, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::history::{History, ID_BLOCK};

/// Where blocks reserved in the runtime dir begin: above any id the history hands out.
pub const SPARE_BASE: u64 = 1 << 52;
/// 2026-01-01T00:00:00Z, the zero of the wall-clock floor.
const FLOOR_EPOCH: Duration = Duration::from_secs(1_767_225_600);
/// The most a counter file may read before it is taken as corrupt (ids stay under 2^53).
const SPARE_END: u64 = 1 << 53;

/// Why no id could be handed out.
#[derive(Debug, thiserror::Error)]
#[error("cannot reserve execution ids: the history cannot be written and {}: {source}", path.display())]
pub struct IdsError {
    path: PathBuf,
    source: std::io::Error,
}

pub struct Ids {
    history: Option<Arc<History>>,
    /// The counter file in the runtime dir, for when the history cannot reserve a block.
    counter: Arc<PathBuf>,
    /// The ids this server may still hand out.
    current: Mutex<Range<u64>>,
    /// The next block, once fetched.
    spare: Arc<Mutex<Option<Range<u64>>>>,
}

impl Ids {
    /// Ids from `first` on (the block the history reserved as it opened; empty without one);
    /// more blocks come from `history`, else from the counter file `counter`.
    pub fn new(history: Option<Arc<History>>, counter: PathBuf, first: Range<u64>) -> Ids {
        Ids { history, counter: Arc::new(counter), current: Mutex::new(first), spare: Arc::new(Mutex::new(None)) }
    }

    /// The next id. Waits for a reservation only when the current block is used up before the
    /// next one arrived, and then off the async threads.
    pub async fn next(&self) -> Result<u64, IdsError> {
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let fresh = match spare {
            Some(block) => block,
            None => {
                let (history, counter) = (self.history.clone(), Arc::clone(&self.counter));
                tokio::task::spawn_blocking(move || reserve(history.as_deref(), &counter)).await.unwrap_or_else(
                    |_| Err(IdsError { path: PathBuf::new(), source: std::io::Error::other("the reservation failed") }),
                )?
            }
        };
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_empty() {
            *current = fresh;
        } else {
            // Another call refilled the block meanwhile: keep this one for later.
            self.spare.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(fresh);
        }
        let id = current.start;
        current.start += 1;
        Ok(id)
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
        let (history, counter, spare) = (self.history.clone(), Arc::clone(&self.counter), Arc::clone(&self.spare));
        tokio::task::spawn_blocking(move || match reserve(history.as_deref(), &counter) {
            Ok(block) => *spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(block),
            Err(err) => tracing::error!("{err}"),
        });
    }
}

/// A block from the history, else from the counter file.
fn reserve(history: Option<&History>, counter: &std::path::Path) -> Result<Range<u64>, IdsError> {
    if let Some(block) = history.and_then(History::reserve) {
        return Ok(block);
    }
    reserve_in_file(counter).map_err(|source| IdsError { path: counter.to_owned(), source })
}

/// Reserves a block in the counter file `path`: locked, read, advanced, synced.
pub fn reserve_in_file(path: &std::path::Path) -> std::io::Result<Range<u64>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    file.lock()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let floor = clock_floor(SystemTime::now());
    let start = match text.trim().parse::<u64>() {
        Ok(next) if (SPARE_BASE..SPARE_END - ID_BLOCK).contains(&next) => next.max(floor),
        _ => floor,
    };
    let end = start + ID_BLOCK;
    file.rewind()?;
    file.set_len(0)?;
    file.write_all(format!("{end}\n").as_bytes())?;
    file.sync_all()?;
    tracing::warn!(path = %path.display(), first = start, "execution ids reserved in the runtime dir");
    Ok(start..end)
}

/// The lowest id a fresh counter may start at `now`: 2^20 ids for every second since 2026.
fn clock_floor(now: SystemTime) -> u64 {
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().saturating_sub(FLOOR_EPOCH).as_secs();
    SPARE_BASE + (secs << 20).min(SPARE_END - SPARE_BASE - (1 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_blocks_follow_each_other_and_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.ids");
        let first = reserve_in_file(&path).unwrap();
        let second = reserve_in_file(&path).unwrap();
        assert!(first.start >= SPARE_BASE && second.start >= first.end, "{first:?} {second:?}");
        assert!(second.end < SPARE_END);
        // A counter file from an earlier boot, behind the clock, starts again at the floor.
        std::fs::write(&path, format!("{}\n", SPARE_BASE + 5)).unwrap();
        assert!(reserve_in_file(&path).unwrap().start >= clock_floor(SystemTime::now()));
        // A corrupt one too.
        std::fs::write(&path, "garbage").unwrap();
        assert!(reserve_in_file(&path).unwrap().start >= SPARE_BASE);
    }

    #[test]
    fn the_floor_grows_with_time_and_stays_under_2_pow_53() {
        let now = SystemTime::UNIX_EPOCH + FLOOR_EPOCH + Duration::from_secs(10);
        assert_eq!(clock_floor(now), SPARE_BASE + (10 << 20));
        assert!(clock_floor(SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64 * 4)) < SPARE_END);
    }

    #[test]
    fn a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("server.ids")).unwrap();
        assert!(reserve_in_file(&dir.path().join("server.ids")).is_err());
        assert!(!target.exists());
    }
}
