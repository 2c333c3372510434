//! The JSON-RPC methods, one file each, and the one table that maps names to them. Each handler
//! gets its params already decoded into the protocol crate's types, the server state, and the
//! request's context.

mod attach;
mod cancel;
mod execute;
mod handover;
mod health;
mod history;
mod jobs;
mod list;
mod reload;
mod shutdown;
mod signal;
mod status;
mod streams;
mod wait;

use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::{Extensions, Methods};
use jsonrpsee_types::{ErrorObject, ErrorObjectOwned, Params};
use mcli_protocol::{self as protocol, Method, code};

use crate::state::State;
use crate::transport::dispatch::RequestCtx;

/// Builds the dispatch table.
pub fn table(state: State) -> Methods {
    let mut module = RpcModule::new(state);
    register::<protocol::Execute, _, _>(&mut module, execute::execute);
    register::<protocol::Cancel, _, _>(&mut module, cancel::cancel);
    register::<protocol::Status, _, _>(&mut module, status::status);
    register::<protocol::List, _, _>(&mut module, list::list);
    register::<protocol::Shutdown, _, _>(&mut module, shutdown::shutdown);
    register::<protocol::Health, _, _>(&mut module, health::health);
    register::<protocol::History, _, _>(&mut module, history::history);
    register::<protocol::Reload, _, _>(&mut module, reload::reload);
    register::<protocol::Handover, _, _>(&mut module, handover::handover);
    register::<protocol::Attach, _, _>(&mut module, attach::attach);
    register::<protocol::Wait, _, _>(&mut module, wait::wait);
    register::<protocol::Jobs, _, _>(&mut module, jobs::jobs);
    register::<protocol::Signal, _, _>(&mut module, signal::signal);
    module.into()
}

fn register<M, F, Fut>(module: &mut RpcModule<State>, handler: F)
where
    M: Method,
    F: Fn(M::Params, State, RequestCtx) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<M::Result, ErrorObjectOwned>> + Send + 'static,
{
    let registered =
        module.register_async_method(M::NAME, move |params: Params<'static>, state: Arc<State>, ext: Extensions| {
            let handler = handler.clone();
            async move {
                let raw = params.as_str().unwrap_or("{}");
                let params: M::Params = serde_json::from_str(raw).map_err(|e| decode_error(raw, &e))?;
                let Some(request) = ext.get::<RequestCtx>().cloned() else {
                    return Err(error(code::INTERNAL_ERROR, "internal error: request context missing"));
                };
                handler(params, State::clone(&state), request).await
            }
        });
    if let Err(err) = registered {
        // Names come from the protocol crate's constants; a clash is a programming error.
        panic!("method `{}` registered twice: {err}", M::NAME);
    }
}

/// The error for params that do not decode. A client of another protocol revision may send
/// fields this server does not know: it is told about the revisions, not about the fields.
fn decode_error(raw: &str, err: &serde_json::Error) -> ErrorObjectOwned {
    let announced = serde_json::from_str::<serde_json::Value>(raw).ok().and_then(|v| v["protocol"].as_u64());
    match announced {
        Some(client) if client != u64::from(protocol::PROTOCOL_VERSION) => incompatible(client),
        _ => error(code::INVALID_PARAMS, format!("invalid params: {err}")),
    }
}

/// The error for a client that speaks another protocol revision.
pub fn incompatible(client: u64) -> ErrorObjectOwned {
    error(
        code::INCOMPATIBLE_PROTOCOL,
        format!(
            "incompatible protocol: the client speaks protocol {client}, this server (mcli {}) speaks protocol {}; restart the server with `mcli-server restart` so both come from the same release",
            mcli_shared::VERSION,
            protocol::PROTOCOL_VERSION
        ),
    )
}

/// An error object with a message and no data.
pub fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(code, message.into(), None::<()>)
}
