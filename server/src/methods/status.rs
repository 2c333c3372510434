//! `status`: what the server is, where it listens, and what it is doing.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{NoParams, PROTOCOL_VERSION, StatusResult, code};
use mcli_shared::VERSION;
use std::sync::atomic::Ordering;

use super::error;
use crate::dispatch::RequestCtx;
use crate::state::State;

pub async fn status(_: NoParams, state: State, _: RequestCtx) -> Result<StatusResult, ErrorObjectOwned> {
    let config = serde_json::to_value(&state.config)
        .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: config: {e}")))?;
    let executed_total = state.executed_total.load(Ordering::Relaxed);
    Ok(StatusResult {
        pid: std::process::id(),
        version: VERSION.to_owned(),
        protocol: PROTOCOL_VERSION,
        uptime_secs: state.uptime_secs(),
        socket: state.paths.socket.display().to_string(),
        http: state.http.clone(),
        tcp: state.tcp.clone(),
        running: !state.is_shutting_down(),
        active_commands: state.active_commands(),
        queued: state.queued.load(Ordering::Relaxed) as u64,
        command_history_count: state.history.as_ref().map_or(0, |h| h.count()),
        executed_total,
        failed_total: state.failed_total.load(Ordering::Relaxed),
        config,
        workers: state.workers.status(),
    })
}
