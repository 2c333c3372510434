//! `health`: a cheap liveness probe.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{HealthResult, NoParams};
use mcli_shared::VERSION;

use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn health(_: NoParams, state: State, _: RequestCtx) -> Result<HealthResult, ErrorObjectOwned> {
    Ok(HealthResult {
        status: "healthy".to_owned(),
        version: VERSION.to_owned(),
        uptime_secs: state.lifecycle.uptime_secs(),
    })
}
