//! Fuzzes the server's envelope checks (`transport::dispatch::handle_message`): any message
//! bytes, against a small method table, on a single-threaded runtime. The dispatcher must not
//! panic, must answer every request with one well-formed JSON-RPC response (a batch with an
//! array of them), and must stay silent for notifications.

#![no_main]

use std::sync::{Arc, LazyLock};

use jsonrpsee::{Methods, RpcModule};
use jsonrpsee_types::{ErrorObjectOwned, Params};
use libfuzzer_sys::fuzz_target;
use mcli_server::lifecycle::Lifecycle;
use mcli_server::transport::context::ConnectionCtx;
use mcli_server::transport::dispatch::handle_message;
use serde_json::Value;

/// `health` answers; `echo` returns its params, so a handler parses what a peer sent.
static TABLE: LazyLock<Methods> = LazyLock::new(|| {
    let mut module = RpcModule::new(());
    module
        .register_async_method("health", |_, _, _| async { Ok::<_, ErrorObjectOwned>(Value::from("healthy")) })
        .expect("register health");
    module
        .register_async_method("echo", |params: Params<'static>, _, _| async move { params.parse::<Value>() })
        .expect("register echo");
    module.into()
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));

/// Checks that `reply` is one JSON-RPC response.
fn check_response(reply: &Value) {
    let object = reply.as_object().unwrap_or_else(|| panic!("a response that is not an object: {reply}"));
    assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")), "{reply}");
    assert!(object.contains_key("id"), "a response without an id: {reply}");
    assert!(object.contains_key("result") != object.contains_key("error"), "{reply}");
}

/// Whether `data` is one well-formed notification: an object with `jsonrpc` "2.0", a string
/// `method`, no `id`, and `params` (if any) an object or an array.
fn is_notification(data: &[u8]) -> bool {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(data) else { return false };
    message.get("jsonrpc") == Some(&Value::from("2.0"))
        && message.get("method").is_some_and(Value::is_string)
        && !message.contains_key("id")
        && message.get("params").is_none_or(|p| p.is_object() || p.is_array())
}

fuzz_target!(|data: &[u8]| {
    let lifecycle = Arc::new(Lifecycle::default());
    let (conn, _outgoing) = ConnectionCtx::new(&lifecycle, 1, "fuzz", true);
    let reply = RUNTIME.block_on(handle_message(&TABLE, &conn, data));
    if is_notification(data) {
        assert!(reply.is_none(), "a reply to a notification: {:?}", reply.as_deref().map(String::from_utf8_lossy));
    }
    let Some(reply) = reply else { return };
    let reply: Value = serde_json::from_slice(&reply).expect("a reply is JSON");
    match &reply {
        Value::Array(replies) => {
            assert!(!replies.is_empty(), "an empty batch reply");
            replies.iter().for_each(check_response);
        }
        single => check_response(single),
    }
});
