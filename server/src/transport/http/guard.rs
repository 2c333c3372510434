//! The bridge's checks, outermost first: a request must be unambiguous about where it goes and
//! what it carries: one `Host` header, at most one `Content-Type`, and a request target in
//! origin form or naming a loopback host (400); the `Host` header must name a loopback host,
//! or be the literal address the bridge is bound to, against DNS rebinding (403); every POST
//! must say `application/json` (415), which a web page cannot send without a preflight, even
//! with an empty body; every endpoint but `GET /` and `GET /health` needs the token of the
//! server file as `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`, compared in constant
//! time (401). The body's limits are in `body`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::bridge::Bridge;
use super::reply::error;

/// Refuses a request that is ambiguous about its host or its media type (400), then a `Host`
/// that is not this machine's loopback (or the bound address): a DNS rebinding page would send
/// its own name (403).
pub async fn check_host(State(bridge): State<Bridge>, request: Request, next: Next) -> Response {
    if let Err(message) = unambiguous(&request, bridge.bound) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if host_allowed(host, bridge.bound) {
        next.run(request).await
    } else {
        error(StatusCode::FORBIDDEN, format!("forbidden: Host `{host}` is not a loopback name"))
    }
}

/// Whether the request says once where it goes and what it carries: two `Host` headers (or two
/// `Content-Type`s) may be read one way here and another way by a proxy or cache in front, and
/// a request target in absolute form names a host of its own that takes precedence over `Host`
/// (RFC 9112, section 3.2.2). Otherwise the message that refuses it.
fn unambiguous(request: &Request, bound: SocketAddr) -> Result<(), String> {
    for (name, written) in [(header::HOST, "Host"), (header::CONTENT_TYPE, "Content-Type")] {
        if request.headers().get_all(name).iter().nth(1).is_some() {
            return Err(format!("bad request: more than one `{written}` header; send it once"));
        }
    }
    if let Some(authority) = request.uri().authority()
        && !host_allowed(authority.host(), bound)
    {
        let host = authority.host();
        return Err(format!(
            "bad request: the request target names host `{host}`, not this machine; send the path alone (`{} {}`)",
            request.method(),
            request.uri().path()
        ));
    }
    Ok(())
}

/// Refuses a POST that does not say `application/json`: the content types a web page may send
/// without a preflight (`text/plain`, forms) are how cross-site requests get in.
pub async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST
        && let Err((status, message)) = json_type(request.headers())
    {
        return error(status, message);
    }
    next.run(request).await
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
