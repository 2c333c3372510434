//! `cancel`: end a running execution by its id, from any connection. `ok` says whether one
//! was running with that id. A detached job is registered among the running executions with
//! its own token (see `jobs::detach`), so it is cancelled the same way, and ends `cancelled`.
//! A job that the previous server still runs after a restart is asked to stop through its
//! directory (see `Jobs::request_cancel`); that server cancels it within a moment.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{CancelParams, OkResult};

use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn cancel(params: CancelParams, state: State, _: RequestCtx) -> Result<OkResult, ErrorObjectOwned> {
    let id = params.id;
    let ok = state.executions.cancel(id) || {
        let state = state.clone();
        tokio::task::spawn_blocking(move || crate::jobs::cancel_elsewhere(&state.jobs, id)).await.unwrap_or(false)
    };
    tracing::debug!(execution = id, ok, "cancel requested");
    Ok(OkResult { ok })
}
