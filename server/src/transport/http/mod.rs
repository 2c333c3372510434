//! The HTTP transport: the original MCLI API daemon's endpoints and JSON fields, plus `POST /rpc`
//! and `GET /history`, over the same methods as every other transport. No CORS header is ever
//! sent, so a web page cannot read an answer, and a preflight is refused (401 or 405); the other
//! checks are in `guard`.
//!
//! Inside: `routes` (the endpoints), `bridge` (their way to the method table), `guard` (the
//! checks around them), `body` (the body's size and time limits), `admission` (which
//! connections are served) and `reply` (the error bodies). This file serves the connections.

mod admission;
mod body;
mod bridge;
mod guard;
mod jobs;
mod reply;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use nix::sys::socket::{self, Backlog};
use tokio::net::{TcpListener, TcpStream};

use self::admission::Admission;
use self::bridge::Bridge;
use super::{Limit, Transports};
use crate::lifecycle::Lifecycle;

pub use self::admission::{MAX_CONNECTIONS, MAX_PER_ADDRESS};
pub use self::body::{BODY_READ_TIMEOUT, MAX_BODY};

/// Connections accepted beyond [`MAX_CONNECTIONS`]: room for those being refused or evicted,
/// whose tasks end a moment after they leave the table. Only past this many does the accept
/// loop wait, with further connections in the kernel's backlog.
const CLOSING_CONNECTIONS: usize = 128;

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle: a slow or silent client cannot hold a connection slot for long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may still take to write its answer once the server closes
/// connections.
const FINAL_WRITE: Duration = Duration::from_millis(500);

/// What serving one connection needs.
#[derive(Clone)]
struct Shared {
    service: TowerToHyperService<Router>,
    admission: Arc<Admission>,
    lifecycle: Arc<Lifecycle>,
}

/// Serves the bridge on `listener` until the server stops; then lets each connection finish its
/// request in flight.
pub async fn serve(transports: Transports, listener: TcpListener, token: Option<Arc<str>>) {
    let bridge = Bridge::new(transports.clone(), token, bound_address(&listener));
    serve_app(transports, listener, "http", router(bridge)).await;
}

/// Serves `GET /metrics` alone, without a token, on `listener` (`[api_daemon] metrics_addr`,
/// a loopback address), until the server stops.
pub async fn serve_metrics(transports: Transports, listener: TcpListener) {
    let bridge = Bridge::new(transports.clone(), None, bound_address(&listener));
    let app = Router::new()
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(bridge.clone(), guard::check_host))
        .with_state(bridge);
    serve_app(transports, listener, "metrics", app).await;
}

/// The address `listener` is bound to (the unspecified address if it has none, which no
/// `Host` names).
fn bound_address(listener: &TcpListener) -> std::net::SocketAddr {
    listener.local_addr().unwrap_or_else(|err| {
        tracing::error!(%err, "an HTTP listener has no address");
        std::net::SocketAddr::from(([0, 0, 0, 0], 0))
    })
}

/// Serves `app` on `listener` with the connection limits, timeouts and graceful close of the
/// bridge; `transport` names the connections in the logs and metrics.
async fn serve_app(transports: Transports, listener: TcpListener, transport: &'static str, app: Router) {
    // A burst of new connections waits in the kernel's accept queue while the accept loop
    // catches up; the default of 128 overflows under a flood, and then a new client's connect
    // stalls for a second (its SYN is dropped and sent again). The system's maximum, as Go's
    // servers ask for.
    if let Err(err) = socket::listen(&listener, Backlog::MAXCONN) {
        tracing::warn!(%err, "the HTTP listener keeps its accept queue of 128");
    }
    let shared = Shared {
        service: TowerToHyperService::new(app),
        admission: Admission::new(),
        lifecycle: Arc::clone(&transports.lifecycle),
    };
    let serve = move |stream, id| serve_connection(shared.clone(), stream, id);
    let limit = Limit::Wait(MAX_CONNECTIONS + CLOSING_CONNECTIONS);
    transports.accept_loop(transport, listener, limit, serve).await;
}

/// The endpoints behind their checks.
fn router(bridge: Bridge) -> Router {
    let open = Router::new().route("/", get(routes::root)).route("/health", get(routes::health));
    // The open endpoints take no body: none is read (buffered) for a client without the token.
    // The token is checked before the body is read: a client without it gets nothing buffered.
    let guarded = Router::new()
        .route("/status", get(routes::status))
        .route("/commands", get(routes::commands))
        .route("/history", get(routes::history))
        .route("/metrics", get(routes::metrics))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::one))
        .route("/jobs/{id}/output", get(jobs::output))
        .route("/execute", post(routes::execute))
        .route("/rpc", post(routes::rpc))
        .route("/daemon/stop", post(routes::daemon_stop))
        .route("/daemon/start", post(routes::daemon_start))
        .route_layer(middleware::from_fn(body::read_body))
        .route_layer(middleware::from_fn_with_state(bridge.clone(), guard::require_token));
    open.merge(guarded)
        .fallback(routes::not_found)
        // The body is read whole (within the limit) before an endpoint runs; this only guards
        // an endpoint that would ever read one some other way.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(body::check_length))
        .layer(middleware::from_fn(guard::require_json))
        .layer(middleware::from_fn_with_state(bridge.clone(), guard::check_host))
        .with_state(bridge)
}

/// Serves one HTTP connection, if the admission table lets it in: with hyper, a header-read
/// timeout, and its table entry in every request's extensions (for `body::read_body`).
async fn serve_connection(shared: Shared, stream: TcpStream, id: usize) {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(err) => {
            tracing::debug!(connection = id, %err, "HTTP connection gone before it was served");
            return;
        }
    };
    let ticket = match shared.admission.admit(id, peer.ip()) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            tracing::warn!(connection = id, %peer, ?refusal, "HTTP connection refused: every connection in its way is busy");
            admission::refuse(stream, refusal).await;
            return;
        }
    };
    let tracked = Arc::clone(ticket.tracked());
    let service = {
        let (inner, tracked) = (shared.service, Arc::clone(&tracked));
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Arc::clone(&tracked));
            hyper::service::Service::call(&inner, request)
        })
    };
    let mut builder = http1::Builder::new();
    // Headers are small: 64 KiB of them (hyper's default is about 400 KiB) bounds what a
    // connection without a token can make the server hold.
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(64 * 1024);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let served = tokio::select! {
        served = drive(connection, &shared.lifecycle) => served,
        () = tracked.evicted() => {
            tracing::debug!(connection = id, %peer, "HTTP connection closed to make room for another");
            Ok(())
        }
    };
    if let Err(err) = served {
        tracing::debug!(connection = id, %err, "HTTP connection ended");
    }
    drop(ticket);
}

/// Drives a connection to its end, or through a graceful close when the server stops.
async fn drive<S>(
    connection: http1::Connection<TokioIo<TcpStream>, S>,
    lifecycle: &Lifecycle,
) -> Result<(), hyper::Error>
where
    S: HttpService<Incoming, ResBody = axum::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
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
    }
}
