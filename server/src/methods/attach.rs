//! `attach`: a detached job's output from a byte offset (replayed out of its files), then live
//! as `mcli/output` notifications while it runs, then its result, as `execute` would have
//! answered it. The client going away stops the following, never the job.

use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
use mcli_protocol::{AttachParams, ExecuteResult, JobNotFound, code};
use mcli_shared::runner::Chunk;

use super::error;
use super::execute::send_output;
use crate::jobs::{Follow, FollowError};
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn attach(
    params: AttachParams,
    state: State,
    request: RequestCtx,
) -> Result<ExecuteResult, ErrorObjectOwned> {
    let follow = Follow {
        jobs: &state.jobs,
        id: params.id,
        offsets: (params.offset.unwrap_or(0), params.stderr_offset.unwrap_or(0)),
        live: params.follow.unwrap_or(true),
    };
    let emit = |chunk: Chunk| send_output(&request, params.id, chunk);
    match follow.run(emit, &request.cancel).await {
        Ok(meta) => Ok(meta.to_result()),
        Err(err) => Err(follow_error(err)),
    }
}

/// The error for a follow that ended without the job's result.
pub fn follow_error(err: FollowError) -> ErrorObjectOwned {
    match err {
        FollowError::Missing { id, pruned } => job_not_found(id, pruned),
        FollowError::Stopped(id) => error(code::INTERNAL_ERROR, format!("stopped following job {id}; it runs on")),
        io @ FollowError::Io { .. } => error(code::INTERNAL_ERROR, io.to_string()),
    }
}

/// The error for an id that names no job: one that never existed, or whose output is gone.
pub fn job_not_found(id: u64, pruned: bool) -> ErrorObjectOwned {
    let message = if pruned {
        format!(
            "the output of job {id} was pruned to keep all jobs' output under server.jobs_output_total_max; `mcli-server jobs` still shows how it ended"
        )
    } else {
        format!("no job {id}: no detached job with that id exists on this server (`mcli-server jobs` lists them)")
    };
    ErrorObject::owned(code::JOB_NOT_FOUND, message, Some(JobNotFound { id, pruned }))
}
