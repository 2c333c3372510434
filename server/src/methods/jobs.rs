//! `jobs`: the running and recent detached jobs, newest first, as their files say.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{JobsParams, JobsResult, code};

use super::error;
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

/// The states a job can be in, for the `state` filter.
const STATES: [&str; 6] = ["running", "completed", "failed", "timed_out", "cancelled", "interrupted"];

pub async fn jobs(params: JobsParams, state: State, _: RequestCtx) -> Result<JobsResult, ErrorObjectOwned> {
    if let Some(wanted) = params.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(error(
            code::INVALID_PARAMS,
            format!("invalid params: unknown `state` {wanted:?}; it is one of {}", STATES.join(", ")),
        ));
    }
    let limit = params.limit.unwrap_or(100).min(1000) as usize;
    let jobs = tokio::task::spawn_blocking(move || {
        let wanted = |meta: &crate::jobs::Meta| params.state.as_deref().is_none_or(|s| s == meta.state.as_str());
        state
            .jobs
            .newest_first()
            .filter(|(meta, _, _)| wanted(meta))
            .take(limit)
            .map(|(meta, out, err)| meta.to_info(out, err))
            .collect()
    })
    .await
    .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: {e}")))?;
    Ok(JobsResult { jobs })
}
