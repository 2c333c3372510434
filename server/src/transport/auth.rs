//! The first step of a connection on a transport that needs a token (TCP): its first message
//! must be the request `authenticate {token}` with the token of the server file, small, and
//! within a few seconds. Nothing runs before it: anything else (another method, a batch, a
//! notification, a message that is not JSON-RPC, a broken frame) is answered `-32003` and closes
//! the connection. A refused message's id is echoed only when it is a valid id that does not
//! carry the token presented, so that a reply never hands a token back.

use std::time::Duration;

use mcli_protocol::framing::Frame;
use mcli_protocol::{AUTHENTICATE_METHOD, code};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::Connection;
use super::dispatch::{error_reply, valid_id};
use super::hangup::Hangup;

/// The largest message a peer may send before it has authenticated.
const MAX_FRAME_BEFORE_AUTH: usize = 64 * 1024;

/// How long a peer that must authenticate has to send its first message.
const AUTH_WINDOW: Duration = Duration::from_secs(5);

const REFUSED: &str = "unauthorized: the first message must be `authenticate` with the token from the server file";

/// Reads and answers the peer's first message. True when it presented `token`; false when the
/// connection is to close.
pub async fn authenticate<R, W>(connection: &mut Connection<R, W>, token: &str) -> bool
where
    R: AsyncRead + Hangup + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = connection.id();
    connection.restrict_frames(MAX_FRAME_BEFORE_AUTH);
    let Ok(first) = tokio::time::timeout(AUTH_WINDOW, connection.read_frame()).await else {
        tracing::debug!(connection = id, "no authentication in time; closing");
        return false;
    };
    let text = match first {
        None => return false,
        Some(Ok(Frame::Message(text))) => text,
        Some(Ok(Frame::TooLarge { .. }) | Err(_)) => {
            tracing::warn!(connection = id, "oversized or broken message before authentication; closing");
            connection.send(error_reply("null", code::UNAUTHORIZED, REFUSED)).await;
            return false;
        }
    };
    let (reply, ok) = check(&text, token);
    connection.send(reply).await;
    if !ok {
        tracing::warn!(connection = id, transport = connection.transport(), "authentication failed; closing");
        return false;
    }
    connection.lift_frame_limit();
    true
}

/// Checks a first message: it must be the request `authenticate {token}` (a JSON-RPC object
/// with `jsonrpc`, an id, and params by name) with the server's token, compared in constant time.
/// Returns the reply and whether it passed.
fn check(text: &[u8], token: &str) -> (Vec<u8>, bool) {
    use serde_json::Value;
    use subtle::ConstantTimeEq as _;
    let message = match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(message)) => message,
        _ => return (error_reply("null", code::UNAUTHORIZED, REFUSED), false),
    };
    let given = message.get("params").and_then(|p| p.get("token")).and_then(Value::as_str);
    let id = message.get("id").filter(|id| valid_id(id));
    // The id goes back only when it is one, and never with the token in it.
    let echoed = match id {
        Some(Value::String(id)) if given.is_some_and(|t| !t.is_empty() && id.contains(t)) => None,
        other => other,
    };
    let raw_id = echoed.map_or_else(|| "null".to_owned(), Value::to_string);
    let request = message.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && message.get("method").and_then(Value::as_str) == Some(AUTHENTICATE_METHOD)
        && id.is_some();
    match given {
        Some(given) if request && bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            (format!(r#"{{"jsonrpc":"2.0","id":{raw_id},"result":{{"ok":true}}}}"#).into_bytes(), true)
        }
        _ => (error_reply(&raw_id, code::UNAUTHORIZED, REFUSED), false),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_right_token_in_an_authenticate_request_passes() {
        let ok = br#"{"jsonrpc":"2.0","id":7,"method":"authenticate","params":{"token":"s3cret"}}"#;
        let (reply, passed) = check(ok, "s3cret");
        assert!(passed);
        assert_eq!(reply, br#"{"jsonrpc":"2.0","id":7,"result":{"ok":true}}"#);
        for bad in [
            &br#"{"jsonrpc":"2.0","id":"a","method":"authenticate","params":{"token":"wrong"}}"#[..],
            br#"{"jsonrpc":"2.0","id":"a","method":"status","params":{"token":"s3cret"}}"#,
            br#"{"jsonrpc":"2.0","id":"a","method":"authenticate"}"#,
            br#"{"jsonrpc":"2.0","id":"a","method":"authenticate","params":["s3cret"]}"#,
            br#"{"id":"a","method":"authenticate","params":{"token":"s3cret"}}"#,
        ] {
            let (reply, passed) = check(bad, "s3cret");
            assert!(!passed, "{}", String::from_utf8_lossy(bad));
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("a JSON reply");
            assert_eq!(reply["id"], "a", "{reply}");
            assert_eq!(reply["error"]["code"], code::UNAUTHORIZED, "{reply}");
        }
    }

    #[test]
    fn what_is_not_an_authenticate_request_is_refused_and_no_token_comes_back() {
        for (bad, id) in [
            // Not a request: a notification, a batch, params by position, no object at all.
            (&br#"{"jsonrpc":"2.0","method":"authenticate","params":{"token":"s3cret"}}"#[..], json!(null)),
            (br#"[{"jsonrpc":"2.0","id":1,"method":"authenticate","params":{"token":"s3cret"}}]"#, json!(null)),
            (br#"["authenticate",{"token":"s3cret"}]"#, json!(null)),
            (b"GET / HTTP/1.1", json!(null)),
            // Ids that would carry the token back, or are no ids.
            (
                br#"{"jsonrpc":"2.0","id":"wrong-token","method":"authenticate","params":{"token":"wrong-token"}}"#,
                json!(null),
            ),
            (
                br#"{"jsonrpc":"2.0","id":{"token":"guess"},"method":"authenticate","params":{"token":"guess"}}"#,
                json!(null),
            ),
            (br#"{"jsonrpc":"2.0","id":[1],"method":"status"}"#, json!(null)),
            (br#"{"jsonrpc":"2.0","id":-3,"method":"status"}"#, json!(-3)),
        ] {
            let (reply, passed) = check(bad, "s3cret");
            assert!(!passed, "{}", String::from_utf8_lossy(bad));
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("a JSON reply");
            assert_eq!((&reply["id"], &reply["error"]["code"]), (&id, &json!(code::UNAUTHORIZED)), "{reply}");
        }
    }
}
