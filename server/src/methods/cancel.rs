//! `cancel`: end a running execution by its id, from any connection. `ok` says whether one
//! was running with that id. A detached job is registered among the running executions with
//! its own token (see `jobs::detach`), so it is cancelled the same way, and ends `cancelled`.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{CancelParams, OkResult};

use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn cancel(params: CancelParams, state: State, _: RequestCtx) -> Result<OkResult, ErrorObjectOwned> {
    let ok = state.executions.cancel(params.id);
    tracing::debug!(execution = params.id, ok, "cancel requested");
    Ok(OkResult { ok })
}
