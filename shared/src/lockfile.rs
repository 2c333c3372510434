//! Advisory file locks (flock) with a bounded wait. The server holds `NAME.lock` for its whole
//! life; starters hold `NAME.start.lock` while they start one. The kernel drops a lock when its
//! holder dies, even by `kill -9`, so a lock never goes stale. A lock file is opened as every
//! file of the runtime dir is (`paths::open_own_file`): a symbolic link in its place is refused,
//! not followed to create its target.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::paths;

/// Opens (creating it, mode 0600) the lock file at `path`.
pub fn open(path: &Path) -> io::Result<File> {
    paths::open_own_file(path, OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600))
}

/// Takes an exclusive lock on the file at `path`, waiting at most `wait`. `Ok(None)` means
/// another process still held it when the wait ran out.
pub fn lock_within(path: &Path, wait: Duration) -> io::Result<Option<File>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => return Ok(Some(file)),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(e),
    }
    if wait.is_zero() {
        return Ok(None);
    }
    // flock has no timeout: block in a helper thread and stop waiting for it when time is up.
    // A helper still blocked then ends with the process; the caller gives up on the lock.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = file.lock().map(|()| file);
        let _ = tx.send(result);
    });
    match rx.recv_timeout(wait) {
        Ok(result) => result.map(Some),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_waits_then_gets_it_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = lock_within(&path, Duration::ZERO).unwrap().expect("free lock");
        assert!(lock_within(&path, Duration::from_millis(50)).unwrap().is_none());
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || lock_within(&path, Duration::from_secs(30)).unwrap().is_some())
        };
        drop(first);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn a_dangling_link_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, target) = (dir.path().join("x.lock"), dir.path().join("elsewhere"));
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = lock_within(&path, Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!target.exists());
    }
}
