//! Turns one received JSON-RPC message (a request, a notification or a batch) into the reply to
//! send, if any, and a typed call ([`call`]) into its typed result. The methods live in a
//! jsonrpsee [`Methods`] table; this module adds what jsonrpsee leaves to the transport: parse
//! errors, batches, invalid requests, client notifications such as `$/cancelRequest`, and the
//! per-request context ([`RequestCtx`]: the connection's outgoing queue for streamed output, and
//! the request's cancellation token) passed in the request's extensions.
//!
//! It also bounds what one message can cost: a batch has at most [`MAX_BATCH`] members, and a
//! reply is at most [`MAX_REPLY`] bytes (a batch's members share that), serialized into a
//! bounded buffer; a reply that does not fit becomes an error that names the limit.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use jsonrpsee::{Extensions, MethodCallback, MethodResponse, Methods};
use jsonrpsee_types::error::OVERSIZED_RESPONSE_CODE;
use jsonrpsee_types::{ErrorObject, ErrorObjectOwned, Id, Params, Response, ResponsePayload};
use mcli_protocol::framing::DEFAULT_MAX_FRAME;
use mcli_protocol::{CANCEL_REQUEST_NOTIFICATION, Method, code};
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::context::ConnectionCtx;
use super::stdin::StdinRoutes;

/// The most members a batch may have. Each one counts toward its connection's requests in
/// flight, so a batch cannot run more than single requests could.
pub const MAX_BATCH: usize = 64;
/// The largest reply the server sends, which is the largest message either end accepts: a
/// batch's reply included, whose members share it.
pub const MAX_REPLY: usize = DEFAULT_MAX_FRAME;

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
    /// The connection's passed streams and signal routes.
    pub terminal: Arc<super::terminal::Terminal>,
    /// How the request came, for the history: `socket`, `stdio`, `tcp` or `http`.
    pub transport: &'static str,
    /// The most bytes the reply may have, its envelope included: a handler that can answer
    /// with less (a shorter `history` page) keeps within it instead of failing.
    pub max_reply: usize,
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
    if is_batch(text) {
        return handle_batch(methods, conn, text).await;
    }
    handle_single(methods, conn, text, MAX_REPLY).await
}

/// How many requests in flight a message stands for: the members of a batch that will run,
/// else one.
pub fn requests_in(text: &[u8]) -> usize {
    match std::str::from_utf8(text).ok().filter(|text| is_batch(text)).map(parse_batch) {
        Some(Ok(Batch::Members(members))) => members.len().max(1),
        _ => 1,
    }
}

fn is_batch(text: &str) -> bool {
    text.trim_start().starts_with('[')
}

/// A batch as read: its members, or how many there were when they are too many.
enum Batch<'a> {
    Members(Vec<&'a RawValue>),
    TooMany(usize),
}

/// Reads a batch, keeping at most [`MAX_BATCH`] members and only counting the rest, so that a
/// message of millions of tiny members costs no more memory than one of a few.
fn parse_batch(text: &str) -> Result<Batch<'_>, serde_json::Error> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Batch<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a batch (an array of JSON-RPC messages)")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch<'de>, A::Error> {
            let mut members = Vec::new();
            while members.len() < MAX_BATCH {
                match seq.next_element::<&'de RawValue>()? {
                    Some(member) => members.push(member),
                    None => return Ok(Batch::Members(members)),
                }
            }
            let mut count = members.len();
            while seq.next_element::<IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok(if count > MAX_BATCH { Batch::TooMany(count) } else { Batch::Members(members) })
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let batch = serde::Deserializer::deserialize_seq(&mut de, Members)?;
    de.end()?;
    Ok(batch)
}

/// Runs the members of a batch concurrently, each with an equal share of [`MAX_REPLY`], and
/// answers with their replies in request order.
async fn handle_batch(methods: &Methods, conn: &ConnectionCtx, text: &str) -> Option<Vec<u8>> {
    let members = match parse_batch(text) {
        Ok(Batch::Members(members)) => members,
        Ok(Batch::TooMany(count)) => {
            let message = format!(
                "invalid request: a batch of {count} messages is over the limit of {MAX_BATCH}; send them in smaller batches"
            );
            return Some(error_reply("null", code::INVALID_REQUEST, &message));
        }
        Err(e) => return Some(parse_error_reply(&e)),
    };
    if members.is_empty() {
        return Some(error_reply("null", code::INVALID_REQUEST, "invalid request: empty batch"));
    }
    // Room for the brackets and commas; the rest is shared, so the whole stays within the limit.
    let share = (MAX_REPLY - 1 - members.len()) / members.len();
    let replies =
        futures_util::future::join_all(members.iter().map(|item| handle_single(methods, conn, item.get(), share)))
            .await;
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
    Some(out)
}

/// Handles one message that is not a batch (or one member of a batch), with a reply of at most
/// `max_reply` bytes.
async fn handle_single(methods: &Methods, conn: &ConnectionCtx, text: &str, max_reply: usize) -> Option<Vec<u8>> {
    const NOT_AN_OBJECT: &str = "invalid request: expected a JSON-RPC object";
    if !text.trim_start().starts_with('{') {
        // A batch inside a batch, a number, a string: JSON, but not a message.
        return Some(match serde_json::from_str::<IgnoredAny>(text) {
            Err(e) if !e.is_data() => parse_error_reply(&e),
            _ => error_reply("null", code::INVALID_REQUEST, NOT_AN_OBJECT),
        });
    }
    let envelope: Envelope<'_> = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(e) if e.is_data() => return Some(error_reply("null", code::INVALID_REQUEST, NOT_AN_OBJECT)),
        Err(e) => return Some(parse_error_reply(&e)),
    };
    let reply_id = match envelope.id {
        Some(raw) if is_valid_id(raw) => Some(raw),
        Some(_) => {
            return Some(error_reply(
                "null",
                code::INVALID_REQUEST,
                "invalid request: `id` must be a string, an integer or null",
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
    // The reply is built with a null id and given the request's own id here, so that every id
    // JSON-RPC allows (negative numbers included, which jsonrpsee's ids are not) comes back as
    // it was sent.
    let within = max_reply.saturating_sub(raw_id.get().len().saturating_sub(NULL_ID.len()));
    let response = run(methods, conn, raw_id, &method, envelope.params, within).await;
    Some(with_id(response.as_json().get(), raw_id.get()))
}

/// The id of every reply [`run`] builds; [`with_id`] puts the request's own in its place.
const NULL_ID: &str = "null";

/// `reply` (built by jsonrpsee with a null id, which it writes right after `jsonrpc`) with the
/// id `raw_id` instead.
fn with_id(reply: &str, raw_id: &str) -> Vec<u8> {
    const PREFIX: &str = r#"{"jsonrpc":"2.0","id":null,"#;
    match reply.strip_prefix(PREFIX) {
        Some(rest) => {
            let mut out = Vec::with_capacity(reply.len() + raw_id.len());
            out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
            out.extend_from_slice(raw_id.as_bytes());
            out.push(b',');
            out.extend_from_slice(rest.as_bytes());
            out
        }
        // Not the shape jsonrpsee writes: set the id the slow way, on the parsed reply.
        None => {
            let mut value: serde_json::Value = serde_json::from_str(reply).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("id".to_owned(), serde_json::from_str(raw_id).unwrap_or_default());
            }
            serde_json::to_vec(&value).unwrap_or_default()
        }
    }
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
    let _ = run(methods, conn, RawValue::NULL, method, params, MAX_REPLY).await;
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
    let response = run(methods, conn, RawValue::NULL, M::NAME, Some(&params), MAX_REPLY).await;
    // The table's handlers answer in JSON; serde reads it back into the method's result type.
    match serde_json::from_str::<Response<'_, M::Result>>(response.as_json().get()).map_err(internal)?.payload {
        ResponsePayload::Success(result) => Ok(result.into_owned()),
        ResponsePayload::Error(err) => Err(err.into_owned()),
    }
}

/// Runs `method` from the table as request `raw_id` of `conn`, with the request's context in its
/// extensions, and returns its response (with a null id), of at most `max_reply` bytes.
async fn run(
    methods: &Methods,
    conn: &ConnectionCtx,
    raw_id: &RawValue,
    method: &str,
    params: Option<&RawValue>,
    max_reply: usize,
) -> MethodResponse {
    let started = Instant::now();
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
        terminal: Arc::clone(&conn.terminal),
        transport: conn.transport,
        max_reply,
    });
    let response = invoke(methods, conn, method, params, max_reply, ext).await;
    conn.unregister_request(&key);
    // Input for a request that is over (or never ran, e.g. on bad params) is dropped from now on.
    conn.stdin.release(&key);
    conn.terminal.release(&key);
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

/// Calls the handler of `method` and turns what jsonrpsee leaves to the caller (an unknown
/// method, params by position, a panic, a reply over the limit) into errors that say so.
async fn invoke(
    methods: &Methods,
    conn: &ConnectionCtx,
    method: &str,
    params: Option<&RawValue>,
    max_reply: usize,
    ext: Extensions,
) -> MethodResponse {
    let fail = |code, message: String| MethodResponse::error(Id::Null, ErrorObject::owned(code, message, None::<()>));
    let Some(callback) = methods.method(method) else {
        return fail(code::METHOD_NOT_FOUND, format!("method not found: `{method}`"));
    };
    let params = match named_params(params) {
        Some(params) => Params::new(Some(params)).into_owned(),
        None => {
            let message = format!(
                "invalid params: `{method}` takes its params by name, as a JSON object; an array (params by position) is refused"
            );
            return fail(code::INVALID_PARAMS, message);
        }
    };
    let response = match callback {
        MethodCallback::Async(callback) => {
            let call = (callback)(Id::Null, params, jsonrpsee::ConnectionId(conn.id), max_reply, ext);
            // A bug in one handler must not leave its caller without an answer.
            match std::panic::AssertUnwindSafe(call).catch_unwind().await {
                Ok(response) => response,
                Err(_) => {
                    tracing::error!(connection = conn.id, method, "request handler panicked");
                    let message = format!("internal error: the `{method}` handler failed; see the server log");
                    return fail(code::INTERNAL_ERROR, message);
                }
            }
        }
        MethodCallback::Sync(callback) => (callback)(Id::Null, params, max_reply, ext),
        _ => return fail(code::METHOD_NOT_FOUND, format!("method not found: `{method}`")),
    };
    if response.as_error_code() == Some(OVERSIZED_RESPONSE_CODE) {
        tracing::warn!(connection = conn.id, method, max_reply, "reply over the limit; answered with an error");
        return fail(code::REPLY_TOO_LARGE, too_large_message(method, max_reply));
    }
    response
}

/// The text of `params` as the handlers take it: named params (an object) as they are, and an
/// absent `params` (`null` reads as absent) or `[]` as `{}`, which methods without params
/// accept. `None` for a non-empty array: params by position are not part of this protocol.
fn named_params(params: Option<&RawValue>) -> Option<&str> {
    let text = params.map_or("{}", |p| p.get().trim());
    match text.strip_prefix('[') {
        Some(rest) if rest.trim_start() == "]" => Some("{}"),
        Some(_) => None,
        None => Some(text),
    }
}

/// What a reply over its limit is answered with: the limit, and how to ask for less.
fn too_large_message(method: &str, max_reply: usize) -> String {
    let share = if max_reply < MAX_REPLY {
        format!(" (its share of a batch's {MAX_REPLY} bytes; send it on its own or in a smaller batch)")
    } else {
        String::new()
    };
    let hint = match method {
        "execute" => "; the command ran and is in `history`: stream its output (`stream: true`) to get all of it",
        "history" => "; ask for fewer entries with `limit`, and page with `before`",
        _ => "",
    };
    format!("reply too large: the reply to `{method}` is over the limit of {max_reply} bytes{share}{hint}")
}

/// A request id as a map key: its JSON text, so `1` and `"1"` stay apart.
pub fn id_key(raw: &RawValue) -> String {
    // Canonical JSON, so that `mcli/stdin`'s `request_id` (decoded, then printed) matches.
    serde_json::from_str::<serde_json::Value>(raw.get())
        .map(|v| v.to_string())
        .unwrap_or_else(|_| raw.get().trim().to_owned())
}

/// Whether `raw` is an id JSON-RPC allows: a string, an integer (negative ones too, as LSP
/// allows) or null. Fractions and other values are refused.
pub fn is_valid_id(raw: &RawValue) -> bool {
    serde_json::from_str::<serde_json::Value>(raw.get()).is_ok_and(|id| valid_id(&id))
}

/// [`is_valid_id`] for an id already read.
pub fn valid_id(id: &serde_json::Value) -> bool {
    match id {
        serde_json::Value::String(_) | serde_json::Value::Null => true,
        serde_json::Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn parse_error_reply(err: &serde_json::Error) -> Vec<u8> {
    error_reply("null", code::PARSE_ERROR, &format!("parse error: {err}"))
}

/// The error reply with `code` and `message` to every request in `text` (a message or a
/// batch); `None` when it holds no request (notifications only, or nothing readable).
pub fn refusal(text: &[u8], code: i32, message: &str) -> Option<Vec<u8>> {
    let id_of = |member: &RawValue| {
        #[derive(serde::Deserialize)]
        struct Request<'a> {
            #[serde(borrow)]
            id: Option<&'a RawValue>,
        }
        let id = serde_json::from_str::<Request<'_>>(member.get()).ok()?.id?;
        Some(error_reply(id.get(), code, message))
    };
    let text = std::str::from_utf8(text).ok()?;
    if !is_batch(text) {
        return id_of(serde_json::from_str(text).ok()?);
    }
    let Ok(Batch::Members(members)) = parse_batch(text) else { return None };
    let replies: Vec<Vec<u8>> = members.into_iter().filter_map(id_of).collect();
    if replies.is_empty() {
        return None;
    }
    let mut batch = b"[".to_vec();
    batch.extend(replies.join(&b","[..]));
    batch.push(b']');
    Some(batch)
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

    #[test]
    fn a_reply_gets_the_request_id_as_it_was_sent() {
        let reply = r#"{"jsonrpc":"2.0","id":null,"result":{"ok":true}}"#;
        for id in ["-7", r#""a\u0041""#, "18446744073709551615", "null"] {
            let out = with_id(reply, id);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"ok":true}}}}"#)
            );
        }
        let other = with_id(r#"{"id":null,"jsonrpc":"2.0","result":1}"#, "-1");
        let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
        assert_eq!(other, serde_json::json!({"jsonrpc": "2.0", "id": -1, "result": 1}));
    }

    #[test]
    fn ids_are_strings_integers_or_null() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        for ok in ["1", "-1", "0", "\"x\"", "null", "18446744073709551615", "-9223372036854775808"] {
            assert!(is_valid_id(&raw(ok)), "{ok}");
        }
        for bad in ["1.5", "1e3", "true", "[1]", "{\"token\":\"t\"}", "18446744073709551616"] {
            assert!(!is_valid_id(&raw(bad)), "{bad}");
        }
    }

    #[test]
    fn params_are_named_or_empty() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        assert_eq!(named_params(None), Some("{}"));
        assert_eq!(named_params(Some(&raw("[ ]"))), Some("{}"));
        assert_eq!(named_params(Some(&raw(r#"{"a":1}"#))), Some(r#"{"a":1}"#));
        assert_eq!(named_params(Some(&raw(r#"["echo",["pos"]]"#))), None);
    }

    #[test]
    fn a_batch_keeps_at_most_its_limit_of_members_and_counts_the_rest() {
        let members = |n: usize| format!("[{}]", vec!["{}"; n].join(","));
        assert!(matches!(parse_batch(&members(MAX_BATCH)), Ok(Batch::Members(m)) if m.len() == MAX_BATCH));
        assert!(matches!(parse_batch(&members(MAX_BATCH + 1)), Ok(Batch::TooMany(n)) if n == MAX_BATCH + 1));
        assert!(matches!(parse_batch(&members(100_000)), Ok(Batch::TooMany(100_000))));
        assert!(parse_batch("[{},").is_err());
        assert!(parse_batch("[] x").is_err());
        assert_eq!(requests_in(members(3).as_bytes()), 3);
        assert_eq!(requests_in(members(MAX_BATCH + 1).as_bytes()), 1, "a batch refused whole runs nothing");
        assert_eq!(requests_in(b"{}"), 1);
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
