//! A request's body: refused from its declared `Content-Length` when that is over [`MAX_BODY`]
//! (413, before a byte of it is read), then read whole, within [`MAX_BODY`] bytes (413) and
//! [`BODY_READ_TIMEOUT`] (408), before the endpoint runs. Until its body has arrived, a
//! connection counts as idle (see `admission`): a client that sends headers and then a trickle
//! holds nothing that others need.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::BytesMut;
use futures_util::StreamExt as _;

use super::admission::Tracked;
use super::reply::error;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// How long a client may take to send a request's body once its headers are in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses a request whose `Content-Length` says its body is over [`MAX_BODY`], from the header
/// alone: nothing of the body is read, and the connection is closed after the answer.
pub async fn check_length(request: Request, next: Next) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    // hyper has refused a length that is not a number (400) before this runs.
    if let Some(length) = declared.and_then(|v| v.trim().parse::<u64>().ok())
        && length > MAX_BODY as u64
    {
        return too_large(&format!(" (Content-Length: {length})"));
    }
    next.run(request).await
}

/// Reads the body whole before the endpoint runs, then marks the connection busy until the
/// answer is ready.
pub async fn read_body(request: Request, next: Next) -> Response {
    let tracked = request.extensions().get::<Arc<Tracked>>().cloned();
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, collect(body)).await {
        Ok(Ok(body)) => body,
        Ok(Err(refused)) => return refused,
        Err(_) => {
            let secs = BODY_READ_TIMEOUT.as_secs();
            let message =
                format!("the body did not arrive within {secs} s of the headers; send the whole body at once");
            return error(StatusCode::REQUEST_TIMEOUT, message);
        }
    };
    // A connection evicted while its body came in is closing: its request is not run.
    let _busy = match tracked {
        Some(tracked) => match tracked.busy() {
            Some(busy) => Some(busy),
            None => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "server busy: the connection was closed for another");
            }
        },
        None => None,
    };
    next.run(Request::from_parts(parts, Body::from(body.freeze()))).await
}

/// The body, read to its end within [`MAX_BODY`] bytes; or the answer that refuses it.
async fn collect(body: Body) -> Result<BytesMut, Response> {
    let mut stream = body.into_data_stream();
    let mut collected = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            error(StatusCode::BAD_REQUEST, format!("the body could not be read: {err}; send it again in full"))
        })?;
        if collected.len() + chunk.len() > MAX_BODY {
            return Err(too_large(""));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected)
}

fn too_large(declared: &str) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over the limit of {MAX_BODY} bytes{declared}; send at most 1 MiB"),
    )
}
