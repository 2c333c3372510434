//! `reload`: read the config again and put it in force, or refuse it whole with every error.

use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
use mcli_protocol::{NoParams, ReloadResult, code};

use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn reload(_: NoParams, state: State, _: RequestCtx) -> Result<ReloadResult, ErrorObjectOwned> {
    crate::reload::reload(&state).await.map_err(|errors| {
        let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        tracing::warn!("reload refused; the configuration in force is unchanged:\n{errors}");
        let message = format!("the config has errors; the one in force is unchanged:\n{errors}");
        ErrorObject::owned(code::CONFIG_INVALID, message, Some(serde_json::json!({ "errors": list })))
    })
}
