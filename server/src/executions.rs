//! The executions of a server: admission among `max_concurrent_commands` (with a bounded queue),
//! the table of running commands that `status` and `cancel` read, their ids, and the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use mcli_protocol::{ActiveCommand, ExecStatus};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::history::rfc3339;
use crate::ids::{Ids, IdsError};
use crate::lifecycle::{BusyGuard, Lifecycle};

pub struct Executions {
    lifecycle: Arc<Lifecycle>,
    ids: Ids,
    /// One permit per command allowed to run at once (`max_concurrent_commands`).
    slots: Arc<Semaphore>,
    /// Permits to take out of service as running commands end, after the limit was lowered
    /// below what runs. Its lock also orders giving a slot back against changing the limit, so
    /// no slot slips back into use in between.
    debt: Arc<Mutex<usize>>,
    max_running: AtomicUsize,
    max_queued: AtomicUsize,
    /// Calls waiting for a slot.
    queued: AtomicUsize,
    running: Mutex<BTreeMap<u64, Running>>,
    /// Woken whenever an execution ends, so shutdown can wait for the last one.
    ended: Notify,
    executed_total: AtomicU64,
    failed_total: AtomicU64,
}

struct Running {
    command: String,
    started: SystemTime,
    /// Ends the execution, for `cancel`.
    cancel: CancellationToken,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken and the queue is full.
    Busy { running: usize, queued: usize },
    /// The server is shutting down: the call never ran, so it may run on the next server.
    ShuttingDown,
}

/// A slot among `max_concurrent_commands`, held while the command runs.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    debt: Arc<Mutex<usize>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut debt = self.debt.lock().unwrap_or_else(|p| p.into_inner());
        let Some(permit) = self.permit.take() else { return };
        if *debt > 0 {
            // A lowered limit takes the slot out of service instead of handing it on.
            *debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

impl Executions {
    pub fn new(lifecycle: Arc<Lifecycle>, ids: Ids, max_running: usize, max_queued: usize) -> Executions {
        Executions {
            lifecycle,
            ids,
            slots: Arc::new(Semaphore::new(max_running)),
            debt: Arc::new(Mutex::new(0)),
            max_running: AtomicUsize::new(max_running),
            max_queued: AtomicUsize::new(max_queued),
            queued: AtomicUsize::new(0),
            running: Mutex::new(BTreeMap::new()),
            ended: Notify::new(),
            executed_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
        }
    }

    fn running(&self) -> MutexGuard<'_, BTreeMap<u64, Running>> {
        // Every update is a single insert or remove, so a poisoned lock holds a whole map.
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a slot, in the bounded queue. `Ok(None)` when `cancel` fired while waiting.
    pub async fn admit(&self, cancel: &CancellationToken) -> Result<Option<Slot>, Refusal> {
        if self.lifecycle.is_shutting_down() {
            return Err(Refusal::ShuttingDown);
        }
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(Some(self.slot(permit)));
        }
        let max_queued = self.max_queued.load(Ordering::SeqCst);
        if self.queued.fetch_add(1, Ordering::SeqCst) >= max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let running = self.max_running.load(Ordering::SeqCst);
            return Err(Refusal::Busy { running, queued: max_queued });
        }
        let waited = tokio::select! {
            permit = Arc::clone(&self.slots).acquire_owned() => Ok(permit.ok().map(|permit| self.slot(permit))),
            () = cancel.cancelled() => Ok(None),
            () = self.lifecycle.stop.cancelled() => Err(Refusal::ShuttingDown),
        };
        self.queued.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(Some(_)) if self.lifecycle.is_shutting_down() => Err(Refusal::ShuttingDown),
            waited => waited,
        }
    }

    /// A slot if one is free now (and the server is not shutting down), without queueing.
    pub fn try_admit(&self) -> Option<Slot> {
        if self.lifecycle.is_shutting_down() {
            return None;
        }
        Arc::clone(&self.slots).try_acquire_owned().ok().map(|permit| self.slot(permit))
    }

    /// Whether a call that finds no free slot would be queued (rather than refused as busy).
    pub fn queue_has_room(&self) -> bool {
        self.queued.load(Ordering::SeqCst) < self.max_queued.load(Ordering::SeqCst)
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        Slot { permit: Some(permit), debt: Arc::clone(&self.debt) }
    }

    /// Changes `max_concurrent_commands` and `max_queued_commands` for the calls from now on.
    /// A lower limit takes free slots out of service at once and busy ones as their commands
    /// end; running commands are never ended for it.
    pub fn set_limits(&self, max_running: usize, max_queued: usize) {
        self.max_queued.store(max_queued, Ordering::SeqCst);
        let mut debt = self.debt.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.max_running.swap(max_running, Ordering::SeqCst);
        if max_running > old {
            // Slots still owed from a lower limit are simply not taken out any more.
            let add = max_running - old;
            let forgiven = add.min(*debt);
            *debt -= forgiven;
            self.slots.add_permits(add - forgiven);
        } else if max_running < old {
            let cut = old - max_running;
            *debt += cut - self.slots.forget_permits(cut);
        }
    }

    /// Registers an execution as running under a fresh id; the guard unregisters it and counts
    /// how it ended. Fails only when no id can be reserved anywhere (see [`Ids`]).
    pub async fn begin(self: &Arc<Self>, command: &str, cancel: CancellationToken) -> Result<ExecutionGuard, IdsError> {
        let id = self.ids.next().await?;
        let busy = self.lifecycle.busy();
        self.running().insert(id, Running { command: command.to_owned(), started: SystemTime::now(), cancel });
        Ok(ExecutionGuard { executions: Arc::clone(self), id, status: None, _busy: busy })
    }

    /// Cancels the running execution `id`; false when none runs with that id.
    pub fn cancel(&self, id: u64) -> bool {
        match self.running().get(&id) {
            Some(run) => {
                run.cancel.cancel();
                true
            }
            None => false,
        }
    }

    pub fn active(&self) -> Vec<ActiveCommand> {
        self.running()
            .iter()
            .map(|(id, run)| ActiveCommand { id: *id, command: run.command.clone(), started: rfc3339(run.started) })
            .collect()
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed) as u64
    }

    /// Executions ended so far, and how many of them did not complete.
    pub fn totals(&self) -> (u64, u64) {
        (self.executed_total.load(Ordering::Relaxed), self.failed_total.load(Ordering::Relaxed))
    }

    /// Waits until no execution runs, `grace` has passed, or shutdown turned immediate.
    pub async fn wait_for_all(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            if self.running().is_empty() || self.lifecycle.is_immediate() {
                return;
            }
            tokio::select! {
                () = &mut ended => {}
                () = self.lifecycle.abort.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// Keeps an execution in the table of running ones while it runs.
pub struct ExecutionGuard {
    executions: Arc<Executions>,
    pub id: u64,
    status: Option<ExecStatus>,
    _busy: BusyGuard,
}

impl ExecutionGuard {
    /// Records how the execution ended, for the counters.
    pub fn finish(mut self, status: ExecStatus) {
        self.status = Some(status);
    }

    /// As [`ExecutionGuard::finish`], for an owner that drops the guard later.
    pub fn set_status(&mut self, status: ExecStatus) {
        self.status = Some(status);
    }
}

impl Drop for ExecutionGuard {
    fn drop(&mut self) {
        let executions = &self.executions;
        let ended = executions.running().remove(&self.id);
        if let Some(run) = ended {
            let status = self.status.map_or("unknown", ExecStatus::as_str);
            crate::metrics::execution_ended(&run.command, status, run.started.elapsed().unwrap_or_default());
        }
        executions.executed_total.fetch_add(1, Ordering::Relaxed);
        if self.status != Some(ExecStatus::Completed) {
            executions.failed_total.fetch_add(1, Ordering::Relaxed);
        }
        executions.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executions(max_running: usize) -> Executions {
        let ids = Ids::new(None, std::path::PathBuf::from("/nonexistent/ids"), 1..1000);
        Executions::new(Arc::new(Lifecycle::default()), ids, max_running, 10)
    }

    #[tokio::test]
    async fn a_lower_limit_takes_slots_out_as_commands_end_and_a_higher_one_adds_them() {
        let executions = executions(2);
        let cancel = CancellationToken::new();
        let (a, b) = (executions.admit(&cancel).await.unwrap(), executions.admit(&cancel).await.unwrap());
        executions.set_limits(1, 10);
        drop(a);
        assert_eq!(executions.slots.available_permits(), 0, "one still runs: the limit of 1 is used");
        drop(b);
        assert_eq!(executions.slots.available_permits(), 1);
        executions.set_limits(3, 10);
        assert_eq!(executions.slots.available_permits(), 3);
        executions.set_limits(2, 10);
        assert_eq!(executions.slots.available_permits(), 2, "free slots go at once");
    }
}
