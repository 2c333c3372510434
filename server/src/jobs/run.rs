//! Starting a detached job: its directory and files, its entry among the running executions
//! (so `cancel`, `status` and `max_concurrent_commands` see it), and the task that runs it,
//! owned by the server's lifecycle rather than by the connection that asked for it.

use std::time::{Instant, SystemTime};

use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
use mcli_protocol::{ExecStatus, ExecuteParams, ExecuteResult, code};
use mcli_shared::execution::Execution;
use mcli_shared::runner::Outcome;
use tokio::sync::watch;

use super::meta::Meta;
use super::sink::JobSink;
use super::store::Progress;
use crate::executions::{ExecutionGuard, Slot};
use crate::history::{Record, rfc3339};
use crate::state::State;

/// Starts `execution` as a detached job holding `slot`; answers `{id, status: "running"}` at
/// once.
pub async fn detach(
    state: &State,
    slot: Slot,
    execution: Execution,
    params: &ExecuteParams,
    transport: &'static str,
) -> Result<ExecuteResult, ErrorObjectOwned> {
    // Not the request's token: the client going away must not end the job; the server's end does.
    let cancel = state.lifecycle.abort.child_token();
    let name = execution.spec().name.clone();
    let running = state.executions.begin(&name, cancel.clone()).await.map_err(|err| {
        tracing::error!("{err}");
        error(code::INTERNAL_ERROR, format!("{err}; free space for the history or the runtime dir and run it again"))
    })?;
    let started = SystemTime::now();
    let meta = Meta {
        id: running.id,
        command: name,
        args: params.args.clone(),
        cwd: params.cwd.clone(),
        transport: transport.to_owned(),
        started: rfc3339(started),
        started_ms: started.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        state: ExecStatus::Running,
        exit_code: None,
        signal: None,
        duration_ms: 0,
        server_pid: std::process::id(),
        truncated: false,
        pruned: false,
        time_limit: None,
    };
    let sink = open(state, &meta).await?;
    let (progress, rx) = watch::channel(Progress::default());
    state.jobs.set_live(meta.id, rx);
    let sink = JobSink::new(sink.0, sink.1, state.config().server.job_output_max, progress.clone());
    let result = ExecuteResult { status: ExecStatus::Running, ..meta.to_result() };
    let job = Job { state: state.clone(), meta, running, progress, transport };
    state.lifecycle.tasks.spawn(job.run(execution, sink, slot, cancel));
    Ok(result)
}

/// Creates the job's directory and opens its output files for appending.
async fn open(state: &State, meta: &Meta) -> Result<(tokio::fs::File, tokio::fs::File), ErrorObjectOwned> {
    let cannot = |err: std::io::Error| {
        let dir = state.jobs.root().display().to_string();
        tracing::error!(%err, dir, "cannot create a job");
        error(code::INTERNAL_ERROR, format!("cannot keep the job's output in {dir}: {err}; nothing was run"))
    };
    let (jobs_state, meta_copy) = (state.clone(), meta.clone());
    let dir = tokio::task::spawn_blocking(move || jobs_state.jobs.create(&meta_copy))
        .await
        .map_err(|e| cannot(std::io::Error::other(e)))?
        .map_err(cannot)?;
    let append = |name: &str| {
        let path = dir.join(name);
        async move { tokio::fs::OpenOptions::new().append(true).open(path).await }
    };
    Ok((append("stdout").await.map_err(cannot)?, append("stderr").await.map_err(cannot)?))
}

/// A detached job between its start and its end on disk.
struct Job {
    state: State,
    meta: Meta,
    running: ExecutionGuard,
    progress: watch::Sender<Progress>,
    transport: &'static str,
}

impl Job {
    async fn run(
        mut self,
        execution: Execution,
        mut sink: JobSink,
        slot: Slot,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let time_limit = execution.time_limit();
        let started = Instant::now();
        let mut outcome = execution.run(&self.state.workers, &mut sink, &cancel).await;
        drop(slot);
        if outcome.status == ExecStatus::Cancelled && self.state.lifecycle.abort.is_cancelled() {
            outcome.status = ExecStatus::Interrupted;
        }
        tracing::debug!(job = self.meta.id, status = outcome.status.as_str(), "job ended");
        self.meta.truncated = sink.truncated;
        self.end(outcome, time_limit, started).await;
    }

    /// Puts the end on disk, then tells the followers, the history and the waiters.
    async fn end(mut self, outcome: Outcome, time_limit: Option<mcli_protocol::TimeLimit>, started: Instant) {
        let meta = &mut self.meta;
        meta.state = outcome.status;
        (meta.exit_code, meta.signal) = (outcome.exit_code, outcome.signal);
        meta.duration_ms = started.elapsed().as_millis() as u64;
        meta.time_limit = time_limit.filter(|_| outcome.status == ExecStatus::TimedOut);
        let (dir, copy) = (self.state.jobs.job_dir(meta.id), meta.clone());
        let total_max = self.state.config().server.jobs_output_total_max;
        let state = self.state.clone();
        let written = tokio::task::spawn_blocking(move || {
            let written = copy.write(&dir);
            state.jobs.prune(total_max);
            written
        })
        .await;
        if let Ok(Err(err)) | Err(err) = written.map_err(std::io::Error::other) {
            tracing::error!(job = self.meta.id, %err, "cannot record how a job ended");
        }
        self.progress.send_modify(|p| p.ended = true);
        self.state.jobs.set_ended(self.meta.id);
        self.running.set_status(outcome.status);
        if let Some(history) = &self.state.history {
            history.record(record(&self.meta, self.transport)).await;
        }
    }
}

/// The history row of a detached job.
pub fn record(meta: &Meta, transport: &'static str) -> Record {
    Record {
        id: meta.id,
        command: meta.command.clone(),
        args: meta.args.clone(),
        cwd: meta.cwd.clone(),
        transport,
        started: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(meta.started_ms),
        duration_ms: meta.duration_ms,
        status: meta.state,
        exit_code: meta.exit_code,
        signal: meta.signal,
        cached: false,
        detached: true,
    }
}

/// An error object with a message and no data (as the methods make them; not imported from
/// there, so that the methods depend on the jobs and not the other way round).
fn error(code: i32, message: String) -> ErrorObjectOwned {
    ErrorObject::owned(code, message, None::<()>)
}
