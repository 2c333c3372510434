//! `history`: past executions, newest first, filtered by command and by failure.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{HistoryParams, HistoryResult, code};

use super::error;
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn history(params: HistoryParams, state: State, _: RequestCtx) -> Result<HistoryResult, ErrorObjectOwned> {
    let Some(history) = &state.history else {
        return Ok(HistoryResult { entries: Vec::new() });
    };
    let path = history.path.clone();
    let entries = tokio::task::spawn_blocking(move || crate::history::query(&path, &params))
        .await
        .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: {e}")))?
        .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: {e}")))?;
    Ok(HistoryResult { entries })
}
