//! The HTTP bridge: the original MCLI API daemon's endpoints and JSON fields, plus `POST /rpc`
//! and `GET /history`, over the same methods as every other transport.
//!
//! Security, outermost first: the `Host` header must name a loopback host, or be the literal
//! address the bridge is bound to, against DNS rebinding (403); every POST must say
//! `application/json` (415), which a web page cannot send without a preflight, even with an
//! empty body; every endpoint but `GET /` and `GET /health` needs the token of the server file as
//! `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`, compared in constant time (401); a body
//! is at most [`MAX_BODY`] bytes (413). No CORS header is ever sent, so a web page cannot read an
//! answer, and a preflight is refused (401 or 405).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mcli_protocol::code;
use serde::Deserialize;
use serde_json::{Value, json};

use super::context::ConnectionCtx;
use super::{Limit, Transports, dispatch};
use crate::lifecycle::Lifecycle;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct Bridge {
    transports: Transports,
    /// `None` when auth is off (allowed for a loopback bind only).
    token: Option<Arc<str>>,
    /// The bound address: a `Host` naming it is accepted besides the loopback names.
    bound: SocketAddr,
}

/// Serves the bridge on `listener` until the server stops.
pub async fn serve(transports: Transports, listener: tokio::net::TcpListener, token: Option<Arc<str>>) {
    let bound = match listener.local_addr() {
        Ok(bound) => bound,
        Err(err) => {
            tracing::error!(%err, "the HTTP listener has no address");
            return;
        }
    };
    let bridge = Bridge { transports: transports.clone(), token, bound };
    let open = Router::new().route("/", get(root)).route("/health", get(health));
    let guarded = Router::new()
        .route("/status", get(status))
        .route("/commands", get(commands))
        .route("/history", get(history))
        .route("/execute", post(execute))
        .route("/rpc", post(rpc))
        .route("/daemon/stop", post(daemon_stop))
        .route("/daemon/start", post(daemon_start))
        .route_layer(middleware::from_fn_with_state(bridge.clone(), require_token));
    let app = open
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; GET / lists them") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(require_json))
        .layer(middleware::from_fn_with_state(bridge.clone(), check_host))
        .with_state(bridge);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let lifecycle = Arc::clone(&transports.lifecycle);
    let serve = move |stream, id| serve_connection(service.clone(), Arc::clone(&lifecycle), stream, id);
    transports.accept_loop("http", listener, Limit::Wait(MAX_CONNECTIONS), serve).await;
}

/// HTTP connections served at once; further ones wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 512;

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle: a slow or silent client cannot hold a connection slot for long.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a connection may still take to write its answer once the server closes
/// connections.
const FINAL_WRITE: std::time::Duration = std::time::Duration::from_millis(500);

/// Serves one HTTP connection with hyper, with a header-read timeout.
async fn serve_connection(
    service: hyper_util::service::TowerToHyperService<Router>,
    lifecycle: Arc<Lifecycle>,
    stream: tokio::net::TcpStream,
    id: usize,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = lifecycle.stop.cancelled() => {
            // The request in flight gets its answer. A connection that has not sent its request
            // yet would hold the shutdown up to the header timeout: once the server closes
            // connections (its commands have ended), what is left has a moment to write its
            // answer, then is closed.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                served = connection.as_mut() => served,
                () = lifecycle.close_connections.cancelled() => {
                    tokio::time::timeout(FINAL_WRITE, connection.as_mut()).await.unwrap_or(Ok(()))
                }
            }
        }
    };
    if let Err(err) = served {
        tracing::debug!(connection = id, %err, "HTTP connection ended");
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "success": false, "error": message.into() }))).into_response()
}

/// Refuses a `Host` that is not this machine's loopback (or the bound address): a DNS
/// rebinding page would send its own name.
async fn check_host(AxumState(bridge): AxumState<Bridge>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if host_allowed(host, bridge.bound) {
        next.run(request).await
    } else {
        error(StatusCode::FORBIDDEN, format!("forbidden: Host `{host}` is not a loopback name"))
    }
}

/// Refuses a POST that does not say `application/json`: the content types a web page may send
/// without a preflight (`text/plain`, forms) are how cross-site requests get in. Also gives the
/// body limit's refusal a JSON body like every other error.
async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST
        && let Err((status, message)) = json_type(request.headers())
    {
        return error(status, message);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over the limit of {MAX_BODY} bytes"));
    }
    response
}

fn json_type(headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be JSON (Content-Type: application/json)".to_owned()))
    }
}

fn host_allowed(host: &str, bound: SocketAddr) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        // An address literal cannot be a rebinding attack: accept the bound one (any, for a
        // wildcard bind).
        Ok(ip) => ip.is_loopback() || ip == bound.ip() || bound.ip().is_unspecified(),
        Err(_) => false,
    }
}

async fn require_token(AxumState(bridge): AxumState<Bridge>, request: Request, next: Next) -> Response {
    use subtle::ConstantTimeEq as _;
    let Some(token) = &bridge.token else { return next.run(request).await };
    let headers = request.headers();
    let bearer = |value: &'_ str| -> Option<String> {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned));
    match given {
        Some(given) if bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())) => next.run(request).await,
        Some(_) => unauthorized("unauthorized: wrong token"),
        None => unauthorized(
            "unauthorized: send the token of the server file as `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN` (`mcli-server token` prints it)",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// The JSON body of a POST, or the status and message that refuse it.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, (StatusCode, String)> {
    json_type(headers)?;
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}")))
}

impl Bridge {
    /// Calls a method as over any transport; `Err` holds the JSON-RPC error object.
    async fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
        let reply = self.raw(request.as_bytes()).await.unwrap_or_default();
        let mut reply: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        match reply.get_mut("error") {
            Some(error) => Err(error.take()),
            None => Ok(reply.get_mut("result").map(Value::take).unwrap_or(Value::Null)),
        }
    }

    /// Dispatches one raw JSON-RPC message (or batch) as a connection of its own; output is not
    /// streamed over HTTP unless asked for, and then dropped.
    ///
    /// The call runs in a task of its own: when the HTTP client goes away, hyper drops this
    /// future, and the guard cancels the call, which then ends (its process tree with it) and is
    /// recorded like any cancelled call instead of vanishing mid-run.
    async fn raw(&self, message: &[u8]) -> Option<Vec<u8>> {
        let lifecycle = &self.transports.lifecycle;
        let (ctx, mut outgoing) = ConnectionCtx::new(lifecycle, self.transports.next_id(), "http", false);
        let _hang_up = ctx.hang_up_token().drop_guard();
        let (methods, message) = (self.transports.methods.clone(), message.to_vec());
        let call = lifecycle.tasks.spawn(async move {
            let drain = tokio::spawn(async move { while outgoing.recv().await.is_some() {} });
            let reply = dispatch::handle_message(&methods, &ctx, &message).await;
            drop(ctx);
            let _ = drain.await;
            reply
        });
        call.await.ok().flatten()
    }
}

/// The HTTP status for a JSON-RPC error.
fn status_of(error: &Value) -> StatusCode {
    match error["code"].as_i64().map(|c| c as i32) {
        Some(code::COMMAND_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(code::SERVER_BUSY | code::SHUTTING_DOWN) => StatusCode::SERVICE_UNAVAILABLE,
        Some(code::INVALID_PARAMS | code::INVALID_REQUEST | code::PARSE_ERROR) => StatusCode::BAD_REQUEST,
        Some(code::COMMAND_BROKEN) => StatusCode::UNPROCESSABLE_ENTITY,
        Some(code::UNAUTHORIZED) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn rpc_error(error: Value) -> Response {
    let message = error["message"].as_str().unwrap_or("error").to_owned();
    error_with(status_of(&error), message, error)
}

fn error_with(status: StatusCode, message: String, detail: Value) -> Response {
    (status, axum::Json(json!({ "success": false, "error": message, "detail": detail }))).into_response()
}

async fn root() -> Response {
    axum::Json(json!({
        "service": "mcli",
        "version": mcli_shared::VERSION,
        "status": "running",
        "endpoints": [
            "GET /", "GET /health", "GET /status", "GET /commands", "GET /history",
            "POST /execute", "POST /rpc", "POST /daemon/start", "POST /daemon/stop"
        ],
    }))
    .into_response()
}

async fn health(AxumState(bridge): AxumState<Bridge>) -> Response {
    match bridge.call("health", json!({})).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => rpc_error(err),
    }
}

async fn status(AxumState(bridge): AxumState<Bridge>) -> Response {
    match bridge.call("status", json!({})).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => rpc_error(err),
    }
}

async fn commands(AxumState(bridge): AxumState<Bridge>) -> Response {
    match bridge.call("list", json!({})).await {
        Ok(mut result) => {
            let commands = result["commands"].take();
            let total = commands.as_array().map_or(0, Vec::len);
            axum::Json(json!({ "commands": commands, "total": total })).into_response()
        }
        Err(err) => rpc_error(err),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<u32>,
    command: Option<String>,
    failed: Option<bool>,
}

async fn history(
    AxumState(bridge): AxumState<Bridge>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "query: limit (a number), command (a name), failed (true or false)");
    };
    let params = json!({ "limit": query.limit, "command": query.command, "failed": query.failed });
    let params: serde_json::Map<String, Value> = params
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match bridge.call("history", Value::Object(params)).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => rpc_error(err),
    }
}

/// The original's `POST /execute`: `{command_name (or command), args, timeout}`, answering
/// `success`, `output`, `error`, `exit_code`, `execution_time_ms`, `status` and `result`.
async fn execute(AxumState(bridge): AxumState<Bridge>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match json_body(&headers, &body) {
        Ok(body) => body,
        Err((status, message)) => return error(status, message),
    };
    let Some(command) = body.get("command_name").or_else(|| body.get("command")).and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "the body needs `command_name` (or `command`): the command to run");
    };
    let mut params = json!({ "command": command, "stream": false });
    let fields = [
        ("args", "args"),
        ("timeout", "timeout"),
        ("cwd", "cwd"),
        ("env", "env"),
        ("stdin", "stdin"),
        ("no_cache", "no_cache"),
    ];
    for (key, field) in fields {
        if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
            params[field] = value.clone();
        }
    }
    if let Some(args) = params.get("args").filter(|a| !a.is_array()) {
        let kind = if args.is_string() { "a string" } else { "not a list" };
        return error(StatusCode::BAD_REQUEST, format!("`args` must be a list of strings, not {kind}"));
    }
    match bridge.call("execute", params).await {
        Ok(result) => {
            let output = result["stdout"].as_str().unwrap_or_default().to_owned();
            let stderr = result["stderr"].as_str().unwrap_or_default().to_owned();
            let success = result["status"] == "completed";
            let error = if success {
                Value::Null
            } else if stderr.is_empty() {
                Value::String(format!("command ended with status {}", result["status"].as_str().unwrap_or("failed")))
            } else {
                Value::String(stderr.clone())
            };
            axum::Json(json!({
                "success": success,
                "output": output,
                // Output that is not UTF-8 comes base64-encoded here instead (byte-exact).
                "output_b64": result["stdout_b64"],
                "stderr": stderr,
                "stderr_b64": result["stderr_b64"],
                "result": output,
                "error": error,
                "exit_code": result["exit_code"],
                "signal": result["signal"],
                "execution_time_ms": result["duration_ms"],
                "status": result["status"],
                "id": result["id"],
                "cached": result["cached"],
                "truncated": result["truncated"],
            }))
            .into_response()
        }
        Err(err) => rpc_error(err),
    }
}

/// JSON-RPC over HTTP: a request or a batch in, the reply out (204 for notifications only).
async fn rpc(AxumState(bridge): AxumState<Bridge>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err((status, message)) = json_body(&headers, &body) {
        return error(status, message);
    }
    match bridge.raw(&body).await {
        Some(reply) => ([(header::CONTENT_TYPE, "application/json")], reply).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn daemon_stop(AxumState(bridge): AxumState<Bridge>) -> Response {
    match bridge.call("shutdown", json!({})).await {
        Ok(_) => axum::Json(json!({ "success": true, "message": "the daemon is stopping" })).into_response(),
        Err(err) => rpc_error(err),
    }
}

async fn daemon_start() -> Response {
    axum::Json(json!({
        "success": true,
        "message": "the daemon is already running",
        "pid": std::process::id(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only() {
        let bound: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        for ok in ["localhost", "localhost:8000", "127.0.0.1:8000", "127.1.2.3", "[::1]:8000", "LOCALHOST"] {
            assert!(host_allowed(ok, bound), "{ok}");
        }
        for bad in ["", "evil.example", "evil.example:8000", "192.168.1.5:8000", "localhost.evil.example"] {
            assert!(!host_allowed(bad, bound), "{bad}");
        }
        let wide: SocketAddr = "10.0.0.7:8000".parse().unwrap();
        assert!(host_allowed("10.0.0.7:8000", wide));
    }
}
