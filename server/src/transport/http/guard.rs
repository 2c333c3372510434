//! The bridge's checks, outermost first: the `Host` header must name a loopback host, or be the
//! literal address the bridge is bound to, against DNS rebinding (403); every POST must say
//! `application/json` (415), which a web page cannot send without a preflight, even with an
//! empty body; every endpoint but `GET /` and `GET /health` needs the token of the server file as
//! `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`, compared in constant time (401); a body
//! is at most [`MAX_BODY`] bytes (413).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::bridge::Bridge;
use super::reply::error;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Refuses a `Host` that is not this machine's loopback (or the bound address): a DNS
/// rebinding page would send its own name.
pub async fn check_host(State(bridge): State<Bridge>, request: Request, next: Next) -> Response {
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
pub async fn require_json(request: Request, next: Next) -> Response {
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

/// Whether the body says it is JSON; otherwise the status and message that refuse it.
pub fn json_type(headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
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

/// Refuses a request without the token, when the bridge asks for one.
pub async fn require_token(State(bridge): State<Bridge>, request: Request, next: Next) -> Response {
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
