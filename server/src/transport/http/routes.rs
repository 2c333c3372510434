//! The bridge's endpoints: the original MCLI API daemon's paths and JSON fields, plus `POST /rpc`
//! and `GET /history`. Each REST endpoint calls one method typed, with the types the client
//! uses; `POST /rpc` passes JSON-RPC through as it is.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
use mcli_protocol::{
    ExecStatus, Execute, ExecuteParams, Health, History, HistoryParams, List, NoParams, Shutdown, ShutdownParams,
    Status, code,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::bridge::Bridge;
use super::guard::json_type;
use super::reply::{error, rpc_error};

/// Every endpoint, as `GET /` lists them.
const ENDPOINTS: [&str; 13] = [
    "GET /",
    "GET /health",
    "GET /status",
    "GET /commands",
    "GET /history",
    "GET /metrics",
    "GET /jobs",
    "GET /jobs/ID",
    "GET /jobs/ID/output",
    "POST /execute",
    "POST /rpc",
    "POST /daemon/start",
    "POST /daemon/stop",
];

pub async fn root() -> Response {
    axum::Json(json!({
        "service": "mcli",
        "version": mcli_shared::VERSION,
        "status": "running",
        "endpoints": ENDPOINTS,
    }))
    .into_response()
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint; GET / lists them")
}

pub async fn health(State(bridge): State<Bridge>) -> Response {
    match bridge.call::<Health>(NoParams {}).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => rpc_error(err),
    }
}

pub async fn status(State(bridge): State<Bridge>) -> Response {
    match bridge.call::<Status>(NoParams {}).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => rpc_error(err),
    }
}

pub async fn commands(State(bridge): State<Bridge>) -> Response {
    match bridge.call::<List>(NoParams {}).await {
        Ok(result) => {
            let total = result.commands.len();
            axum::Json(json!({ "commands": result.commands, "total": total })).into_response()
        }
        Err(err) => rpc_error(err),
    }
}

/// The server's metrics in Prometheus' text format; the states (running, queued, workers)
/// come from `status`.
pub async fn metrics(State(bridge): State<Bridge>) -> Response {
    match bridge.call::<Status>(NoParams {}).await {
        Ok(status) => {
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::render(&status)).into_response()
        }
        Err(err) => rpc_error(err),
    }
}

/// The query keys `GET /history` knows, as the `history` method's params.
const HISTORY_KEYS: [&str; 4] = ["limit", "command", "failed", "before"];

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<u32>,
    command: Option<String>,
    failed: Option<bool>,
    /// Entries older than this execution id: the next page.
    before: Option<u64>,
}

pub async fn history(State(bridge): State<Bridge>, uri: Uri) -> Response {
    let params = match history_params(&uri) {
        Ok(params) => params,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match bridge.call::<History>(params).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => rpc_error(err),
    }
}

/// The `history` params of a `GET /history` query; an unknown key is refused by name, as the
/// method refuses an unknown field, rather than ignored (a misspelt filter would otherwise
/// answer with everything).
fn history_params(uri: &Uri) -> Result<HistoryParams, String> {
    let known = || HISTORY_KEYS.map(|k| format!("`{k}`")).join(", ");
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| format!("the query of GET /history is not a query string ({e}); its keys are {}", known()))?;
    if let Some((key, _)) = pairs.iter().find(|(key, _)| !HISTORY_KEYS.contains(&key.as_str())) {
        return Err(format!("unknown query key `{key}` for GET /history; the known keys are {}", known()));
    }
    let Query(HistoryQuery { limit, command, failed, before }) = Query::try_from_uri(uri).map_err(|_| {
        "query: limit (a number), command (a name), failed (true or false), before (an execution id), each at most once"
            .to_owned()
    })?;
    Ok(HistoryParams { limit, command, failed, before })
}

/// The original's `POST /execute`: `{command_name (or command), args, timeout}`, answering
/// `success`, `output`, `error`, `exit_code`, `execution_time_ms`, `status` and `result`.
pub async fn execute(State(bridge): State<Bridge>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match json_body(&headers, &body) {
        Ok(body) => body,
        Err((status, message)) => return error(status, message),
    };
    let Some(command) = body.get("command_name").or_else(|| body.get("command")).and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "the body needs `command_name` (or `command`): the command to run");
    };
    let mut params = json!({ "command": command, "stream": false });
    for field in ["args", "timeout", "cwd", "env", "stdin", "no_cache", "detach"] {
        if let Some(value) = body.get(field).filter(|v| !v.is_null()) {
            params[field] = value.clone();
        }
    }
    if let Some(args) = params.get("args").filter(|a| !a.is_array()) {
        let kind = if args.is_string() { "a string" } else { "not a list" };
        return error(StatusCode::BAD_REQUEST, format!("`args` must be a list of strings, not {kind}"));
    }
    let params = match decode::<ExecuteParams>(&params) {
        Ok(params) => params,
        Err(err) => return rpc_error(err),
    };
    let result = match bridge.call::<Execute>(params).await {
        Ok(result) => result,
        Err(err) => return rpc_error(err),
    };
    if result.status == ExecStatus::Running {
        // A detached job: accepted, running; `GET /jobs/ID` follows it.
        let body = json!({ "id": result.id, "status": result.status, "command": result.command });
        return (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    }
    let output = result.stdout.unwrap_or_default();
    let stderr = result.stderr.unwrap_or_default();
    let success = result.status == ExecStatus::Completed;
    let error = if success {
        None
    } else if stderr.is_empty() {
        Some(format!("command ended with status {}", result.status.as_str()))
    } else {
        Some(stderr.clone())
    };
    axum::Json(json!({
        "success": success,
        "output": output,
        // Output that is not UTF-8 comes base64-encoded here instead (byte-exact).
        "output_b64": result.stdout_b64,
        "stderr": stderr,
        "stderr_b64": result.stderr_b64,
        "result": output,
        "error": error,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "execution_time_ms": result.duration_ms,
        "status": result.status,
        "id": result.id,
        "cached": result.cached,
        "truncated": result.truncated,
    }))
    .into_response()
}

/// JSON-RPC over HTTP: a request or a batch in, the reply out (204 for notifications only).
pub async fn rpc(State(bridge): State<Bridge>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err((status, message)) = json_body(&headers, &body) {
        return error(status, message);
    }
    match bridge.raw(&body).await {
        Some(reply) => ([(header::CONTENT_TYPE, "application/json")], reply).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

pub async fn daemon_stop(State(bridge): State<Bridge>) -> Response {
    match bridge.call::<Shutdown>(ShutdownParams::default()).await {
        Ok(_) => axum::Json(json!({ "success": true, "message": "the daemon is stopping" })).into_response(),
        Err(err) => rpc_error(err),
    }
}

pub async fn daemon_start() -> Response {
    axum::Json(json!({
        "success": true,
        "message": "the daemon is already running",
        "pid": std::process::id(),
    }))
    .into_response()
}

/// The JSON body of a POST, or the status and message that refuse it.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, (StatusCode, String)> {
    json_type(headers)?;
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}")))
}

/// A method's params from the fields a body gave, refused as the method table refuses a
/// request's params: decoded from their JSON text, so that a field of the wrong type is named
/// with its place, as over JSON-RPC.
fn decode<P: DeserializeOwned>(params: &Value) -> Result<P, ErrorObjectOwned> {
    serde_json::from_str(&params.to_string())
        .map_err(|e| ErrorObject::owned(code::INVALID_PARAMS, format!("invalid params: {e}"), None::<()>))
}
