//! [`Jobs`]: where the jobs of one server name live on disk, which of them run now (with the
//! `watch` their followers wait on), and the bounds on what is kept: the total of all jobs'
//! output (oldest finished jobs pruned first) and the number of job directories.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::{Notify, watch};

use super::meta::Meta;

/// Job directories kept at most; past it the oldest finished ones are removed whole (a job
/// whose output was pruned keeps its `meta.json` until then, so that it is reported as pruned
/// rather than unknown).
const MAX_JOB_DIRS: usize = 10_000;
/// A file in a job's directory that asks the server running it to cancel it.
const CANCEL_FILE: &str = "cancel";

/// What a running job tells its followers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes written to its files so far.
    pub bytes: u64,
    /// It has ended and its `meta.json` says how.
    pub ended: bool,
}

/// The detached jobs of one server name.
pub struct Jobs {
    dir: PathBuf,
    live: Mutex<HashMap<u64, watch::Receiver<Progress>>>,
    /// Woken whenever a job ends, for `wait`.
    pub ended: Notify,
}

/// What a lookup by id found.
pub enum Lookup {
    /// A job, as its `meta.json` says, with the sizes of its output files.
    Found(Box<Meta>, u64, u64),
    /// No job of that id exists; `pruned` when it existed and its output was pruned.
    Missing { pruned: bool },
}

impl Jobs {
    /// The jobs under `dir` (created when the first job starts).
    pub fn new(dir: PathBuf) -> Jobs {
        Jobs { dir, live: Mutex::new(HashMap::new()), ended: Notify::new() }
    }

    /// Where the jobs of server `name` live in the state dir `state_dir`.
    pub fn dir_for(state_dir: &Path, name: &str) -> PathBuf {
        state_dir.join(format!("{name}.jobs"))
    }

    pub fn root(&self) -> &Path {
        &self.dir
    }

    /// The directory of job `id`.
    pub fn job_dir(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, watch::Receiver<Progress>>> {
        // Every update is a single insert or remove, so a poisoned lock holds a whole map.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers job `id` as running, with the receiver its followers clone.
    pub fn set_live(&self, id: u64, progress: watch::Receiver<Progress>) {
        self.live().insert(id, progress);
    }

    /// Unregisters job `id` once its end is on disk, and wakes the waiters.
    pub fn set_ended(&self, id: u64) {
        self.live().remove(&id);
        self.ended.notify_waiters();
    }

    /// The progress of job `id`, while this server runs it.
    pub fn progress(&self, id: u64) -> Option<watch::Receiver<Progress>> {
        self.live().get(&id).cloned()
    }

    /// Creates the directory of a new job with empty output files and its `meta.json`.
    pub fn create(&self, meta: &Meta) -> io::Result<PathBuf> {
        create_private_dir(&self.dir)?;
        let dir = self.job_dir(meta.id);
        create_private_dir(&dir)?;
        for name in ["stdout", "stderr"] {
            std::fs::File::create(dir.join(name))?;
        }
        meta.write(&dir)?;
        Ok(dir)
    }

    /// Job `id` as its files say now (blocking: call it off the async threads).
    pub fn lookup(&self, id: u64) -> io::Result<Lookup> {
        let dir = self.job_dir(id);
        let meta = match Meta::read(&dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Missing { pruned: false }),
            Err(e) => return Err(e),
        };
        let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        Ok(Lookup::Found(Box::new(meta.clone()), size("stdout"), size("stderr")))
    }

    /// Asks the server that runs job `id` (a previous one, still finishing it after a restart)
    /// to cancel it: a `cancel` file in the job's directory, which that server looks for
    /// (blocking).
    pub fn request_cancel(&self, id: u64) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.job_dir(id).join(CANCEL_FILE);
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map(drop)
    }

    /// Whether a cancel of job `id` was asked for by [`Jobs::request_cancel`] and not yet
    /// acted on (blocking).
    pub fn cancel_requested(&self, id: u64) -> bool {
        self.job_dir(id).join(CANCEL_FILE).exists()
    }

    /// Takes back a cancel request, or, from the server that acted on it, says it did: the
    /// file goes (blocking).
    pub fn clear_cancel_request(&self, id: u64) {
        let _ = std::fs::remove_file(self.job_dir(id).join(CANCEL_FILE));
    }

    /// Every job on disk, newest first (blocking). Directories that are not jobs are skipped.
    pub fn all(&self) -> Vec<(Meta, u64, u64)> {
        self.newest_first().collect()
    }

    /// The jobs on disk, newest first, each read when the iterator gets to it (blocking): a
    /// caller that wants a few reads a few, whatever the number of jobs kept.
    pub fn newest_first(&self) -> impl Iterator<Item = (Meta, u64, u64)> + '_ {
        let entries = std::fs::read_dir(&self.dir).into_iter().flatten();
        let mut ids: Vec<u64> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok()).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.into_iter().filter_map(|id| match self.lookup(id) {
            Ok(Lookup::Found(meta, out, err)) => Some((*meta, out, err)),
            _ => None,
        })
    }

    /// Whether the jobs' output and directories are within their bounds, from the sizes of the
    /// files alone (no `meta.json` read): what a job's end usually finds (blocking).
    fn within_bounds(&self, total_max: u64) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return true };
        let (mut dirs, mut total) = (0usize, 0u64);
        for entry in entries.flatten() {
            if entry.file_name().to_str().and_then(|name| name.parse::<u64>().ok()).is_none() {
                continue;
            }
            dirs += 1;
            for name in ["stdout", "stderr"] {
                total += std::fs::metadata(entry.path().join(name)).map_or(0, |m| m.len());
            }
        }
        dirs <= MAX_JOB_DIRS && total <= total_max
    }

    /// Keeps the output of all jobs within `total_max` bytes, pruning the oldest finished jobs'
    /// output first, and the job directories within [`MAX_JOB_DIRS`] (blocking).
    pub fn prune(&self, total_max: u64) {
        if self.within_bounds(total_max) {
            return;
        }
        let mut jobs = self.all();
        jobs.reverse();
        let mut total: u64 = jobs.iter().map(|(_, out, err)| out + err).sum();
        for (meta, out, err) in jobs.iter_mut() {
            if total <= total_max {
                break;
            }
            if meta.is_running() || meta.pruned {
                continue;
            }
            let dir = self.job_dir(meta.id);
            for name in ["stdout", "stderr"] {
                let _ = std::fs::remove_file(dir.join(name));
            }
            meta.pruned = true;
            if let Err(err) = meta.write(&dir) {
                tracing::warn!(job = meta.id, %err, "cannot mark a pruned job");
            }
            total -= *out + *err;
            tracing::info!(job = meta.id, bytes = *out + *err, "pruned the output of a job");
        }
        let finished: Vec<u64> = jobs.iter().filter(|(m, _, _)| !m.is_running()).map(|(m, _, _)| m.id).collect();
        for id in finished.iter().take(jobs.len().saturating_sub(MAX_JOB_DIRS)) {
            let _ = std::fs::remove_dir_all(self.job_dir(*id));
        }
    }
}

/// Creates `dir` (mode 0700) unless it exists.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
