//! Pools of warm workers, one per worker program: up to `max_workers` processes that each
//! serve one call at a time and stay up between calls, stopped after `idle_timeout` without one.
//! A call waits for a free worker; a worker that fails a call is replaced by the next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mcli_protocol::{ExecStatus, Stream, WorkerStatus};
use mcli_shared::execution::WorkerSource;
use mcli_shared::manifest::{Manifest, WorkerPolicy};
use mcli_shared::runner::{Chunk, Invocation, Outcome};
use mcli_shared::worker::{self, Call, Worker, WorkerError};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Workers {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

struct Pool {
    command: String,
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
    fn put_back(&self, pid: u32, mut worker: Worker, name: &str) {
        let mut state = self.state();
        state.busy.remove(&pid);
        if worker.healthy {
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
        let policy_key = [policy.max_workers as f64, policy.idle_timeout.as_secs_f64()];
        let key = serde_json::json!([manifest.dir(), manifest.run, manifest.env, policy_key]).to_string();
        Arc::clone(self.pools().entry(key).or_insert_with(|| {
            Arc::new(Pool {
                command: name.to_owned(),
                slots: Arc::new(Semaphore::new(policy.max_workers)),
                idle_timeout: policy.idle_timeout,
                state: Mutex::new(PoolState::default()),
            })
        }))
    }

    /// Stops workers that have been idle past their pool's timeout.
    pub fn reap(&self) {
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
        let permit = tokio::select! {
            permit = Arc::clone(&pool.slots).acquire_owned() => permit,
            () = cancel.cancelled() => return Outcome::ended(ExecStatus::Cancelled, started),
        };
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
        let outcome = worker.call(&Call::of(name, inv, stdin), out, cancel).await;
        pool.put_back(pid, worker, name);
        outcome
    }
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
    let _ = out.send(Chunk { stream: Stream::Stderr, data: format!("mcli: {why}\n").into() }).await;
    Outcome::ended(ExecStatus::Failed, started)
}
