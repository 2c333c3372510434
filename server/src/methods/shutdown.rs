//! `shutdown`: stop accepting, let running commands finish within the grace period (or cancel
//! them when `graceful` is false), remove the socket and exit. The reply goes out first.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{OkResult, ShutdownParams};

use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn shutdown(params: ShutdownParams, state: State, _: RequestCtx) -> Result<OkResult, ErrorObjectOwned> {
    let graceful = params.graceful.unwrap_or(true);
    tracing::info!(graceful, "shutdown requested");
    state.lifecycle.begin_shutdown(graceful);
    Ok(OkResult { ok: true })
}
