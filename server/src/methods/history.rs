//! `history`: past executions, newest first, filtered by command and by failure, a page at a
//! time. A page holds at most [`MAX_PAGE`] entries and stops before [`MAX_PAGE_BYTES`] of them
//! (or before the reply's own limit, as a member of a large batch); `before` (the id of the last
//! entry of a page) asks for the next one. At most
//! [`CONCURRENT_QUERIES`] pages are read at once, server-wide, so that many calls at once (a
//! batch, many connections) wait for each other instead of each holding a page in memory.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{HistoryParams, HistoryResult, code};
use tokio::sync::Semaphore;

use super::error;
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

/// The most entries one call returns; a larger `limit` gets this many.
pub const MAX_PAGE: u32 = 1_000;
/// A page stops before the entry that would take it past this many bytes of JSON (at least one
/// entry always comes).
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// Pages read at once, by every connection together.
const CONCURRENT_QUERIES: usize = 4;
/// The bytes of a reply that are not entries: `{"jsonrpc":"2.0","id":…,"result":{"entries":[]}}`
/// (the id is counted in the reply's limit already).
const ENVELOPE_BYTES: usize = 64;

static QUERIES: Semaphore = Semaphore::const_new(CONCURRENT_QUERIES);

pub async fn history(
    mut params: HistoryParams,
    state: State,
    request: RequestCtx,
) -> Result<HistoryResult, ErrorObjectOwned> {
    let Some(history) = &state.history else {
        return Ok(HistoryResult { entries: Vec::new() });
    };
    params.limit = Some(params.limit.unwrap_or(50).min(MAX_PAGE));
    let _turn = tokio::select! {
        turn = QUERIES.acquire() => turn.map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: {e}")))?,
        () = request.cancel.cancelled() => {
            return Err(error(code::INTERNAL_ERROR, "internal error: the call was cancelled before it read the history"));
        }
    };
    let (path, max_bytes) =
        (history.path.clone(), MAX_PAGE_BYTES.min(request.max_reply.saturating_sub(ENVELOPE_BYTES)));
    let entries = tokio::task::spawn_blocking(move || crate::history::query_page(&path, &params, max_bytes))
        .await
        .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: {e}")))?
        .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: {e}")))?;
    Ok(HistoryResult { entries })
}
