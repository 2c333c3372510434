//! `list`: the commands this server can run.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{ListResult, NoParams};

use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn list(_: NoParams, state: State, _: RequestCtx) -> Result<ListResult, ErrorObjectOwned> {
    Ok(ListResult { commands: state.commands.current().await.0.list() })
}
