//! Pools of warm workers, one per worker program: up to `max_workers` processes that each
//! serve one call at a time and stay up between calls, stopped after `idle_timeout` without one.
//! A call waits for a free worker; a worker that fails a call is replaced by the next call.
//!
//! A pool serves one version of its program. An edit of a file in the manifest's folder (the
//! worker's source, next to the manifest) retires the pool before the next call, which starts a
//! fresh worker; a manifest that changed or went away retires its pool at the next reap (every
//! half second). A retired pool's idle workers stop at once, its busy ones after their call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mcli_protocol::{ExecStatus, Stream, WorkerStatus};
use mcli_shared::execution::WorkerSource;
use mcli_shared::manifest::{Manifest, WorkerPolicy};
use mcli_shared::registry::{CommandKind, Registry};
use mcli_shared::runner::{self, Chunk, Invocation, Outcome};
use mcli_shared::worker::{self, Call, Worker, WorkerError};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Workers {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// Idle workers offered to a successor during a hand-over: neither used nor stopped here
    /// until it has taken them (or failed, and they go back to their pools).
    offered: Mutex<Vec<(Arc<Pool>, Worker)>>,
}

/// A pool's idle workers as a successor takes them over (`restart`): the pool's identity, so
/// that it serves the same definition, and each worker's pipes in the process handing over.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HandedPool {
    key: String,
    print: u64,
    command: String,
    max_workers: usize,
    idle_timeout_secs: f64,
    workers: Vec<worker::Handed>,
}

struct Pool {
    /// The files of the manifest's folder when the pool started (see [`folder_print`]).
    print: u64,
    /// Set when the pool is retired: workers coming back from a call are stopped.
    retired: std::sync::atomic::AtomicBool,
    command: String,
    /// The most workers at once (`max_workers`), which `slots` counts.
    max_workers: usize,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<(Worker, Instant)>,
    /// Workers serving a call now: pid, the command and calls served.
    busy: HashMap<u32, (String, u64)>,
}

impl Pool {
    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used worker that is still alive; dead ones are dropped here.
    fn idle_worker(&self) -> Option<Worker> {
        loop {
            let (mut worker, _) = self.state().idle.pop()?;
            if worker.is_alive() {
                return Some(worker);
            }
        }
    }

    /// Takes a worker back after a call: idle again if it is still fit to serve.
    fn put_back(&self, mut worker: Worker, name: &str) {
        let mut state = self.state();
        if worker.healthy && !self.retired.load(std::sync::atomic::Ordering::SeqCst) {
            worker.last_command = name.to_owned();
            state.idle.push((worker, Instant::now()));
        }
    }
}

impl Workers {
    fn pools(&self) -> MutexGuard<'_, HashMap<String, Arc<Pool>>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pool for `manifest`'s worker program. One pool per program (folder, argv and
    /// environment), so that one worker serves every manifest that runs it; a changed manifest
    /// gets a new pool, the old one idles out.
    fn pool(&self, manifest: &Manifest, policy: &WorkerPolicy, name: &str) -> Arc<Pool> {
        let print = folder_print(manifest.dir());
        let mut pools = self.pools();
        let key = pool_key(manifest, policy);
        if let Some(pool) = pools.get(&key).filter(|pool| pool.print != print) {
            tracing::info!(command = %pool.command, "the worker's files changed; starting a new worker");
            retire(pool);
            pools.remove(&key);
        }
        Arc::clone(pools.entry(key).or_insert_with(|| {
            Arc::new(Pool {
                print,
                retired: std::sync::atomic::AtomicBool::new(false),
                command: name.to_owned(),
                max_workers: policy.max_workers,
                slots: Arc::new(Semaphore::new(policy.max_workers)),
                idle_timeout: policy.idle_timeout,
                state: Mutex::new(PoolState::default()),
            })
        }))
    }

    /// Retires the pools that no worker manifest of `registry` runs any more (changed or
    /// removed), then stops workers that have been idle past their pool's timeout.
    pub fn reap(&self, registry: &Registry) {
        let wanted: std::collections::HashSet<String> = registry
            .specs()
            .filter_map(|spec| match &spec.kind {
                CommandKind::Manifest(manifest) => manifest.worker.as_ref().map(|policy| pool_key(manifest, policy)),
                _ => None,
            })
            .collect();
        self.pools().retain(|key, pool| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(command = %pool.command, "the worker's manifest changed or went away; stopping its workers");
                retire(pool);
            }
            keep
        });
        let pools: Vec<Arc<Pool>> = self.pools().values().cloned().collect();
        for pool in pools {
            let mut state = pool.state();
            let before = state.idle.len();
            state.idle.retain(|(_, since)| since.elapsed() < pool.idle_timeout);
            if state.idle.len() < before {
                tracing::debug!(command = %pool.command, stopped = before - state.idle.len(), "idle workers stopped");
            }
        }
    }

    /// Offers the idle workers of every live pool to a successor: they leave their pools (so
    /// no call takes them meanwhile) until [`Workers::offered`] says whether it took them.
    pub fn offer(&self) -> Vec<HandedPool> {
        let pools: Vec<(String, Arc<Pool>)> = self.pools().iter().map(|(k, p)| (k.clone(), Arc::clone(p))).collect();
        let mut offered = self.offered.lock().unwrap_or_else(|p| p.into_inner());
        let mut handed = Vec::new();
        for (key, pool) in pools {
            let idle = std::mem::take(&mut pool.state().idle);
            let mut workers = Vec::new();
            for (mut worker, _) in idle {
                if let (true, Some(h)) = (worker.is_alive(), worker.handed()) {
                    workers.push(h);
                    offered.push((Arc::clone(&pool), worker));
                }
            }
            if !workers.is_empty() {
                let (max_workers, idle_timeout_secs) = (pool.max_workers, pool.idle_timeout.as_secs_f64());
                let (print, command) = (pool.print, pool.command.clone());
                handed.push(HandedPool { key, print, command, max_workers, idle_timeout_secs, workers });
            }
        }
        handed
    }

    /// Ends an offer: a successor that took the workers now runs them (this server lets go of
    /// them without stopping them); otherwise they go back to their pools.
    pub fn offered(&self, taken: bool) {
        let offered = std::mem::take(&mut *self.offered.lock().unwrap_or_else(|p| p.into_inner()));
        for (pool, worker) in offered {
            if taken {
                worker.release();
            } else {
                pool.state().idle.push((worker, Instant::now()));
            }
        }
    }

    /// Takes over the workers that the server `from` handed over, in pools of the same
    /// definition. A worker whose pipes cannot be opened is left to its old server, which ends
    /// it when it exits.
    pub fn adopt(&self, from: u32, handed: Vec<HandedPool>) -> usize {
        let mut adopted = 0;
        let mut pools = self.pools();
        for pool in handed {
            let entry = pools.entry(pool.key.clone()).or_insert_with(|| {
                Arc::new(Pool {
                    print: pool.print,
                    retired: std::sync::atomic::AtomicBool::new(false),
                    command: pool.command.clone(),
                    max_workers: pool.max_workers,
                    slots: Arc::new(Semaphore::new(pool.max_workers)),
                    idle_timeout: Duration::try_from_secs_f64(pool.idle_timeout_secs).unwrap_or(Duration::ZERO),
                    state: Mutex::new(PoolState::default()),
                })
            });
            for handed in &pool.workers {
                let log = pool.command.clone();
                match Worker::adopt(from, handed, move |line| tracing::info!(worker = %log, "{line}")) {
                    Ok(worker) => {
                        entry.state().idle.push((worker, Instant::now()));
                        adopted += 1;
                    }
                    Err(err) => tracing::warn!(pid = handed.pid, %err, "cannot take over a warm worker"),
                }
            }
        }
        adopted
    }

    /// The workers now, for `status`.
    pub fn status(&self) -> Vec<WorkerStatus> {
        let pools: Vec<Arc<Pool>> = self.pools().values().cloned().collect();
        let mut list = Vec::new();
        for pool in pools {
            let state = pool.state();
            for (worker, _) in &state.idle {
                let pid = worker.pid().unwrap_or(0);
                let command = if worker.last_command.is_empty() { &pool.command } else { &worker.last_command };
                list.push(entry(command, pid, "idle", worker.calls));
            }
            for (pid, (command, calls)) in &state.busy {
                list.push(entry(command, *pid, "busy", calls + 1));
            }
        }
        list.sort_by_key(|w| w.pid);
        list
    }
}

impl WorkerSource for Workers {
    /// Serves one call with a warm worker of the pool, starting one when none is idle; waits
    /// for a free worker when `max_workers` are busy.
    async fn call(
        &self,
        manifest: &Manifest,
        name: &str,
        mut inv: Invocation,
        out: &mpsc::Sender<Chunk>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let started = Instant::now();
        let Some(policy) = &manifest.worker else {
            return failed(out, "internal error: not a worker command", started).await;
        };
        let pool = self.pool(manifest, policy, name);
        // The input first: a call waiting for it holds no worker.
        let stdin = match worker::call_input(&mut inv, out, cancel, started).await {
            Ok(stdin) => stdin,
            Err(outcome) => return outcome,
        };
        // The wait for a free worker counts against the call's time limit, as a queued process
        // would be timed from its start.
        let waiting = Instant::now();
        let permit = tokio::select! {
            permit = Arc::clone(&pool.slots).acquire_owned() => permit,
            () = cancel.cancelled() => return Outcome::ended(ExecStatus::Cancelled, started),
            () = runner::deadline(inv.timeout) => return Outcome::ended(ExecStatus::TimedOut, started),
        };
        let waited = waiting.elapsed();
        inv.timeout = inv.timeout.map(|limit| limit.saturating_sub(waited));
        let Ok(_permit) = permit else {
            return failed(out, "the worker pool is closed", started).await;
        };
        let mut worker = match pool.idle_worker() {
            Some(worker) => worker,
            None => match spawn(manifest) {
                Ok(worker) => worker,
                Err(err) => return worker::start_failed(out, &err, started).await,
            },
        };
        let pid = worker.pid().unwrap_or(0);
        pool.state().busy.insert(pid, (name.to_owned(), worker.calls));
        // Listed as busy until the call is over, even if this future is dropped mid-call (the
        // worker itself is then killed by its own drop).
        let listed = BusyEntry { pool: Arc::clone(&pool), pid };
        let outcome = worker.call(&Call::of(name, inv, stdin), out, cancel).await;
        // Off the busy list before it is idle again: once idle, another call may list it anew.
        drop(listed);
        pool.put_back(worker, name);
        outcome
    }
}

/// Takes a worker off the pool's busy list when dropped.
struct BusyEntry {
    pool: Arc<Pool>,
    pid: u32,
}

impl Drop for BusyEntry {
    fn drop(&mut self) {
        self.pool.state().busy.remove(&self.pid);
    }
}

/// The pool of a worker program: its folder, argv, environment and policy.
fn pool_key(manifest: &Manifest, policy: &WorkerPolicy) -> String {
    let policy_key = [policy.max_workers as f64, policy.idle_timeout.as_secs_f64()];
    serde_json::json!([manifest.dir(), manifest.run, manifest.env, policy_key]).to_string()
}

/// Stops a pool's idle workers, and its busy ones when their call is over.
fn retire(pool: &Pool) {
    pool.retired.store(true, std::sync::atomic::Ordering::SeqCst);
    pool.state().idle.clear();
}

/// A print of the regular files directly in `dir` (names, sizes, modification times), so that
/// an edit of a worker's source is noticed; subfolders (such as `__pycache__`) are not looked
/// at. At most the first 1,024 entries count.
fn folder_print(dir: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut files: Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)> = entries
        .take(1024)
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((entry.file_name(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}

fn entry(command: &str, pid: u32, state: &str, calls: u64) -> WorkerStatus {
    WorkerStatus { command: command.to_owned(), pid, state: state.to_owned(), calls, rss_kib: rss_kib(pid) }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Starts a worker for `manifest`; its standard error goes to the server log.
fn spawn(manifest: &Manifest) -> Result<Worker, WorkerError> {
    let file = manifest.file.display().to_string();
    Worker::for_manifest(manifest, move |line| tracing::info!(worker = %file, "{line}"))
}

async fn failed(out: &mpsc::Sender<Chunk>, why: &str, started: Instant) -> Outcome {
    let _ = out
        .send(Chunk { stream: Stream::Stderr, data: format!("{}: {why}\n", mcli_shared::program_name()).into() })
        .await;
    Outcome::ended(ExecStatus::Failed, started)
}
