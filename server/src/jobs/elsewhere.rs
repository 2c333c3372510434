//! Jobs run by another server of the same name: one that handed its listeners over runs its
//! detached jobs to their end while clients talk to its successor, and an editor's `--stdio`
//! session runs its own. A `cancel` sent to any of them reaches the job through the job's
//! directory: the server asked leaves a `cancel` file there, and the one running the job, which
//! looks for one while it runs detached jobs, cancels it as if asked directly (so it ends
//! `cancelled`, with the grace period and the whole process tree).

use std::time::Duration;

use mcli_protocol::ExecStatus;

use super::recover::server_alive;
use super::store::{Jobs, Lookup};
use crate::state::State;

/// How often a server running detached jobs looks for cancel requests.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Asks another live server that runs job `id` to cancel it, and waits (up to [`ACK_WAIT`])
/// for that server to say it did by removing the request; false when no such job runs
/// elsewhere, or nothing acted on the request (the job ended meanwhile, or that server is of a
/// release that does not look for requests) (blocking).
pub fn cancel_elsewhere(jobs: &Jobs, id: u64) -> bool {
    let Ok(Lookup::Found(meta, _, _)) = jobs.lookup(id) else { return false };
    if meta.state != ExecStatus::Running || !server_alive(meta.server_pid) {
        return false;
    }
    if let Err(err) = jobs.request_cancel(id) {
        tracing::warn!(job = id, %err, "cannot ask the server running the job to cancel it");
        return false;
    }
    let until = std::time::Instant::now() + ACK_WAIT;
    while std::time::Instant::now() < until {
        if !jobs.cancel_requested(id) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    jobs.clear_cancel_request(id);
    tracing::warn!(job = id, pid = meta.server_pid, "the server running the job did not act on the cancel");
    false
}

/// How long a cancel waits for the server running the job to act on it: a few of its looks.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// Cancels each detached job of this server whose directory asks for it, until running
/// commands are ended for good.
pub async fn answer_cancel_requests(state: State) {
    loop {
        let running: Vec<u64> = state.executions.active().iter().map(|command| command.id).collect();
        let running: Vec<u64> = running.into_iter().filter(|id| state.jobs.progress(*id).is_some()).collect();
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
            // The request goes once acted on, which tells the asking server; a job that has
            // ended meanwhile leaves it, and the asker says nothing was cancelled.
            if state.executions.cancel(id) {
                tracing::info!(job = id, "cancelled at another server's request");
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || state.jobs.clear_cancel_request(id)).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = state.lifecycle.abort.cancelled() => return,
        }
    }
}
