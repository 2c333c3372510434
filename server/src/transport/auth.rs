//! The first step of a connection on a transport that needs a token (TCP): its first message
//! must be the request `authenticate {token}` with the token of the server file, small, and
//! within a few seconds. Nothing runs before it; anything else closes the connection.

use std::time::Duration;

use mcli_protocol::framing::Frame;
use mcli_protocol::{AUTHENTICATE_METHOD, code};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::Connection;
use super::dispatch::error_reply;
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
    let Ok(first) = tokio::time::timeout(AUTH_WINDOW, connection.read()).await else {
        tracing::debug!(connection = id, "no authentication in time; closing");
        return false;
    };
    let text = match first {
        None => return false,
        Some(Frame::TooLarge { .. }) => {
            tracing::warn!(connection = id, "oversized message before authentication; closing");
            connection.send(error_reply("null", code::UNAUTHORIZED, REFUSED)).await;
            return false;
        }
        Some(Frame::Message(text)) => text,
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

/// Checks a first message: it must be the request `authenticate {token}` with the server's
/// token (compared in constant time). Returns the reply and whether it passed.
fn check(text: &[u8], token: &str) -> (Vec<u8>, bool) {
    use subtle::ConstantTimeEq as _;
    #[derive(serde::Deserialize)]
    struct Auth {
        method: String,
        params: Option<AuthParams>,
    }
    #[derive(serde::Deserialize)]
    struct AuthParams {
        token: String,
    }
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
    }
    // The id is read on its own, so that even a refused message gets its reply matched.
    let raw_id =
        serde_json::from_slice::<IdOnly<'_>>(text).ok().and_then(|m| m.id).map_or("null", |id| id.get()).to_owned();
    let auth = serde_json::from_slice::<Auth>(text).ok();
    let given = auth.filter(|a| a.method == AUTHENTICATE_METHOD).and_then(|a| a.params).map(|p| p.token);
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            (format!(r#"{{"jsonrpc":"2.0","id":{raw_id},"result":{{"ok":true}}}}"#).into_bytes(), true)
        }
        _ => (error_reply(&raw_id, code::UNAUTHORIZED, REFUSED), false),
    }
}

#[cfg(test)]
mod tests {
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
        ] {
            let (reply, passed) = check(bad, "s3cret");
            assert!(!passed);
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("a JSON reply");
            assert_eq!(reply["id"], "a", "{reply}");
            assert_eq!(reply["error"]["code"], code::UNAUTHORIZED, "{reply}");
        }
    }
}
