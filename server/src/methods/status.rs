//! `status`: what the server is, where it listens, and what it is doing.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{NoParams, PROTOCOL_VERSION, StatusResult, code};
use mcli_shared::VERSION;

use super::error;
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn status(_: NoParams, state: State, _: RequestCtx) -> Result<StatusResult, ErrorObjectOwned> {
    let config = serde_json::to_value(&*state.config())
        .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: config: {e}")))?;
    let (executed_total, failed_total) = state.executions.totals();
    Ok(StatusResult {
        pid: std::process::id(),
        version: VERSION.to_owned(),
        protocol: PROTOCOL_VERSION,
        uptime_secs: state.lifecycle.uptime_secs(),
        socket: state.paths.socket.display().to_string(),
        http: state.http.addr(),
        tcp: state.listening.tcp.clone(),
        running: !state.lifecycle.is_shutting_down(),
        active_commands: state.executions.active(),
        queued: state.executions.queued(),
        command_history_count: state.history.as_ref().map_or(0, |h| h.count()),
        executed_total,
        failed_total,
        config,
        workers: state.workers.status(),
    })
}
