//! Turns one received JSON-RPC message (a request, a notification or a batch) into the reply to
//! send, if any, and a typed call ([`call`]) into its typed result. The methods live in a
//! jsonrpsee [`Methods`] table; this module adds what jsonrpsee leaves to the transport: parse
//! errors, batches, invalid requests, client notifications such as `$/cancelRequest`, and the
//! per-request context ([`RequestCtx`]: the connection's outgoing queue for streamed output, and
//! the request's cancellation token) passed in the request's extensions.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use jsonrpsee::{Extensions, MethodCallback, MethodResponse, Methods};
use jsonrpsee_types::{ErrorObject, ErrorObjectOwned, Id, Params, Response, ResponsePayload};
use mcli_protocol::{CANCEL_REQUEST_NOTIFICATION, Method, code};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::context::ConnectionCtx;
use super::stdin::StdinRoutes;

/// What a method handler learns about the request it serves, from its extensions.
#[derive(Clone)]
pub struct RequestCtx {
    /// The request's id, echoed in `mcli/output` so clients can match output to requests.
    pub request_id: serde_json::Value,
    /// Cancelled by `$/cancelRequest`, by the connection closing, or by shutdown.
    pub cancel: CancellationToken,
    /// Where notifications for this connection go, in order, ahead of the response.
    pub outgoing: tokio::sync::mpsc::Sender<Bytes>,
    /// Whether output streams by default (stream transports) or is returned in the result.
    pub stream_by_default: bool,
    /// The request's id as a key of the connection's tables (its JSON text).
    pub key: String,
    /// Where the connection's streamed standard input is routed.
    pub stdin: Arc<StdinRoutes>,
    /// How the request came, for the history: `socket`, `stdio`, `tcp` or `http`.
    pub transport: &'static str,
}

/// The envelope of a message, decoded loosely so that a malformed one can still be answered
/// with its id.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    /// Absent for a notification; `Some("null")` for an explicit null id, which is a request.
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<&'a RawValue>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// Keeps a present field, `null` included, as `Some`: only an absent field is `None`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(deserializer).map(Some)
}

/// Handles one message; returns the reply, or `None` when nothing is to be sent (notifications,
/// and batches of notifications).
pub async fn handle_message(methods: &Methods, conn: &ConnectionCtx, text: &[u8]) -> Option<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(text) else {
        return Some(error_reply("null", code::PARSE_ERROR, "parse error: message is not UTF-8"));
    };
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(items) => items,
            Err(e) => return Some(parse_error_reply(&e)),
        };
        if items.is_empty() {
            return Some(error_reply("null", code::INVALID_REQUEST, "invalid request: empty batch"));
        }
        // The calls of a batch run concurrently; replies keep the order of the requests.
        let replies =
            futures_util::future::join_all(items.iter().map(|item| handle_single(methods, conn, item.get()))).await;
        let replies: Vec<Vec<u8>> = replies.into_iter().flatten().collect();
        if replies.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(replies.iter().map(|r| r.len() + 1).sum::<usize>() + 1);
        out.push(b'[');
        for (i, reply) in replies.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(reply);
        }
        out.push(b']');
        return Some(out);
    }
    handle_single(methods, conn, text).await
}

async fn handle_single(methods: &Methods, conn: &ConnectionCtx, text: &str) -> Option<Vec<u8>> {
    let envelope: Envelope<'_> = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(e) if e.is_data() => {
            return Some(error_reply("null", code::INVALID_REQUEST, "invalid request: expected a JSON-RPC object"));
        }
        Err(e) => return Some(parse_error_reply(&e)),
    };
    let reply_id = match envelope.id {
        Some(raw) if is_valid_id(raw) => Some(raw),
        Some(_) => {
            return Some(error_reply(
                "null",
                code::INVALID_REQUEST,
                "invalid request: `id` must be a string, a non-negative integer or null",
            ));
        }
        None => None,
    };
    let invalid =
        |message: &str| Some(error_reply(reply_id.map_or("null", RawValue::get), code::INVALID_REQUEST, message));
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return invalid("invalid request: `jsonrpc` must be \"2.0\"");
    }
    let Some(method) = envelope.method.and_then(|m| serde_json::from_str::<Cow<'_, str>>(m.get()).ok()) else {
        return invalid("invalid request: `method` must be a string");
    };
    if let Some(params) = envelope.params {
        let first = params.get().trim_start().as_bytes().first().copied();
        if !matches!(first, Some(b'{' | b'[')) {
            return invalid("invalid request: `params` must be an object or an array");
        }
    }

    let Some(raw_id) = reply_id else {
        handle_notification(methods, conn, &method, envelope.params).await;
        return None;
    };
    let (json, _, _) = run(methods, conn, raw_id, &method, envelope.params).await.into_parts();
    Some(json.get().as_bytes().to_vec())
}

/// A client notification: `$/cancelRequest` cancels one of the connection's requests, other
/// `$/` notifications are ignored (LSP allows that), and any other method runs with its reply
/// dropped, as JSON-RPC says.
async fn handle_notification(methods: &Methods, conn: &ConnectionCtx, method: &str, params: Option<&RawValue>) {
    if method == CANCEL_REQUEST_NOTIFICATION {
        #[derive(Deserialize)]
        struct CancelParams<'a> {
            #[serde(borrow)]
            id: &'a RawValue,
        }
        match params.map(|p| serde_json::from_str::<CancelParams<'_>>(p.get())) {
            Some(Ok(cancel)) => conn.cancel_request(&id_key(cancel.id)),
            _ => tracing::debug!(connection = conn.id, "ignored $/cancelRequest without an id"),
        }
        return;
    }
    if method.starts_with("$/") {
        tracing::debug!(connection = conn.id, method, "ignored notification");
        return;
    }
    let _ = run(methods, conn, RawValue::NULL, method, params).await;
}

/// Calls method `M` with typed params and returns its typed result: the same handler, checks and
/// bookkeeping as a JSON-RPC request, with no message built or read by hand. A typed call has no
/// id of its own, so each runs on a connection context of its own.
pub async fn call<M: Method>(
    methods: &Methods,
    conn: &ConnectionCtx,
    params: M::Params,
) -> Result<M::Result, ErrorObjectOwned> {
    let internal = |e: serde_json::Error| {
        tracing::error!(connection = conn.id, method = M::NAME, %e, "a typed call does not fit the table");
        ErrorObject::owned(code::INTERNAL_ERROR, format!("internal error: `{}`: {e}", M::NAME), None::<()>)
    };
    let params = serde_json::value::to_raw_value(&params).map_err(internal)?;
    let (json, _, _) = run(methods, conn, RawValue::NULL, M::NAME, Some(&params)).await.into_parts();
    // The table's handlers answer in JSON; serde reads it back into the method's result type.
    match serde_json::from_str::<Response<'_, M::Result>>(json.get()).map_err(internal)?.payload {
        ResponsePayload::Success(result) => Ok(result.into_owned()),
        ResponsePayload::Error(err) => Err(err.into_owned()),
    }
}

/// Runs `method` from the table as request `raw_id` of `conn`, with the request's context in its
/// extensions, and returns its response.
async fn run(
    methods: &Methods,
    conn: &ConnectionCtx,
    raw_id: &RawValue,
    method: &str,
    params: Option<&RawValue>,
) -> MethodResponse {
    let started = Instant::now();
    let id: Id<'static> = match serde_json::from_str::<Id<'_>>(raw_id.get()) {
        Ok(id) => id.into_owned(),
        Err(_) => Id::Null,
    };
    let key = id_key(raw_id);
    let cancel = conn.register_request(&key);
    let mut ext = Extensions::new();
    ext.insert(RequestCtx {
        request_id: serde_json::from_str(raw_id.get()).unwrap_or(serde_json::Value::Null),
        cancel,
        outgoing: conn.outgoing.clone(),
        stream_by_default: conn.stream_by_default,
        key: key.clone(),
        stdin: Arc::clone(&conn.stdin),
        transport: conn.transport,
    });
    // Methods without params accept an absent `params` as `{}`.
    let params = Params::new(Some(params.map_or("{}", RawValue::get))).into_owned();
    let response: MethodResponse = match methods.method(method) {
        Some(MethodCallback::Async(callback)) => {
            let reply_id = id.clone();
            let call = (callback)(id, params, jsonrpsee::ConnectionId(conn.id), usize::MAX, ext);
            // A bug in one handler must not leave its caller without an answer.
            match std::panic::AssertUnwindSafe(call).catch_unwind().await {
                Ok(response) => response,
                Err(_) => {
                    tracing::error!(connection = conn.id, method, "request handler panicked");
                    let message = format!("internal error: the `{method}` handler failed; see the server log");
                    MethodResponse::error(reply_id, ErrorObject::owned(code::INTERNAL_ERROR, message, None::<()>))
                }
            }
        }
        Some(MethodCallback::Sync(callback)) => (callback)(id, params, usize::MAX, ext),
        Some(_) | None => MethodResponse::error(
            id,
            ErrorObject::owned(code::METHOD_NOT_FOUND, format!("method not found: `{method}`"), None::<()>),
        ),
    };
    conn.unregister_request(&key);
    // Input for a request that is over (or never ran, e.g. on bad params) is dropped from now on.
    conn.stdin.release(&key);
    tracing::debug!(
        connection = conn.id,
        request = raw_id.get(),
        method,
        ok = response.is_success(),
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// A request id as a map key: its JSON text, so `1` and `"1"` stay apart.
pub fn id_key(raw: &RawValue) -> String {
    // Canonical JSON, so that `mcli/stdin`'s `request_id` (decoded, then printed) matches.
    serde_json::from_str::<serde_json::Value>(raw.get())
        .map(|v| v.to_string())
        .unwrap_or_else(|_| raw.get().trim().to_owned())
}

fn is_valid_id(raw: &RawValue) -> bool {
    serde_json::from_str::<Id<'_>>(raw.get()).is_ok()
}

fn parse_error_reply(err: &serde_json::Error) -> Vec<u8> {
    error_reply("null", code::PARSE_ERROR, &format!("parse error: {err}"))
}

/// A complete error response with the given raw id.
pub fn error_reply(raw_id: &str, code: i32, message: &str) -> Vec<u8> {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".to_owned());
    format!(r#"{{"jsonrpc":"2.0","id":{raw_id},"error":{{"code":{code},"message":{message}}}}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use mcli_protocol::{Health, HealthResult, NoParams, Status};

    use super::*;
    use crate::lifecycle::Lifecycle;

    /// A table with `health` only, answering from the request context it is given.
    fn table() -> Methods {
        let mut module = jsonrpsee::RpcModule::new(());
        let registered = module.register_async_method(Health::NAME, |_, _, ext: Extensions| async move {
            match ext.get::<RequestCtx>() {
                Some(request) => Ok(HealthResult {
                    status: request.transport.to_owned(),
                    version: request.key.clone(),
                    uptime_secs: 3,
                }),
                None => Err(ErrorObject::owned(code::INTERNAL_ERROR, "no request context", None::<()>)),
            }
        });
        registered.expect("register health");
        module.into()
    }

    #[tokio::test]
    async fn a_typed_call_runs_the_handler_of_the_table() {
        let (conn, _outgoing) = ConnectionCtx::new(&Arc::new(Lifecycle::default()), 1, "test", false);
        let result = call::<Health>(&table(), &conn, NoParams {}).await.expect("a typed result");
        assert_eq!((result.status.as_str(), result.version.as_str(), result.uptime_secs), ("test", "null", 3));

        let err = call::<Status>(&table(), &conn, NoParams {}).await.expect_err("no `status` in the table");
        assert_eq!(err.code(), code::METHOD_NOT_FOUND);
        assert_eq!(err.message(), "method not found: `status`");
    }
}
