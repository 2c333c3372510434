//! `handover`: start a successor on this server's listeners and stop this one once it is ready
//! (`mcli-server restart`). It runs a program, so it is served on the local socket only, whose
//! peers are this user's processes.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{HandoverParams, HandoverResult, code};

use super::error;
use crate::handover::{self, HandoverError};
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn handover(
    params: HandoverParams,
    state: State,
    ctx: RequestCtx,
) -> Result<HandoverResult, ErrorObjectOwned> {
    if ctx.transport != "socket" {
        return Err(error(
            code::INVALID_REQUEST,
            format!("`handover` is served on the local socket only, not over {}", ctx.transport),
        ));
    }
    tracing::info!(program = %params.program, "restart requested: handing the listeners over");
    handover::hand_over(&state, params).await.map_err(|err| {
        tracing::error!("{err}");
        let code = match err {
            HandoverError::ShuttingDown => code::SHUTTING_DOWN,
            _ => code::INTERNAL_ERROR,
        };
        error(code, err.to_string())
    })
}
