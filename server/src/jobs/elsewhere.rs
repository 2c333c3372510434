//! Jobs across a restart: a server that handed its listeners over still runs its detached jobs
//! to their end, while clients talk to its successor. A `cancel` sent to the successor reaches
//! such a job through the job's directory: the successor leaves a `cancel` file there, and the
//! old server, which looks for one while it finishes, cancels the job as if asked directly (so
//! it ends `cancelled`, with the grace period and the whole process tree).

use std::time::Duration;

use mcli_protocol::ExecStatus;

use super::recover::server_alive;
use super::store::{Jobs, Lookup};
use crate::state::State;

/// How often a server that handed over looks for cancel requests.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Asks another live server that runs job `id` to cancel it; false when no such job runs
/// elsewhere (blocking).
pub fn cancel_elsewhere(jobs: &Jobs, id: u64) -> bool {
    let Ok(Lookup::Found(meta, _, _)) = jobs.lookup(id) else { return false };
    if meta.state != ExecStatus::Running || !server_alive(meta.server_pid) {
        return false;
    }
    match jobs.request_cancel(id) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(job = id, %err, "cannot ask the previous server to cancel the job");
            false
        }
    }
}

/// In a server that handed its listeners over: cancels each of its running jobs whose
/// directory asks for it, until running commands are ended for good.
pub async fn answer_cancel_requests(state: State) {
    loop {
        let running: Vec<u64> = state.executions.active().iter().map(|command| command.id).collect();
        let asked = if running.is_empty() {
            Vec::new()
        } else {
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                running.into_iter().filter(|id| state.jobs.cancel_requested(*id)).collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default()
        };
        for id in asked {
            if state.executions.cancel(id) {
                tracing::info!(job = id, "cancelled at the new server's request");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = state.lifecycle.abort.cancelled() => return,
        }
    }
}
