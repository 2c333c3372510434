//! The HTTP transport: the original MCLI API daemon's endpoints and JSON fields, plus `POST /rpc`
//! and `GET /history`, over the same methods as every other transport. No CORS header is ever
//! sent, so a web page cannot read an answer, and a preflight is refused (401 or 405); the other
//! checks are in `guard`.
//!
//! Inside: `routes` (the endpoints), `bridge` (their way to the method table), `guard` (the
//! checks around them) and `reply` (the error bodies). This file serves the connections.

mod bridge;
mod guard;
mod reply;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

use self::bridge::Bridge;
use super::{Limit, Transports};
use crate::lifecycle::Lifecycle;

pub use self::guard::MAX_BODY;

/// HTTP connections served at once; further ones wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 512;

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle: a slow or silent client cannot hold a connection slot for long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may still take to write its answer once the server closes
/// connections.
const FINAL_WRITE: Duration = Duration::from_millis(500);

/// Serves the bridge on `listener` until the server stops; then lets each connection finish its
/// request in flight.
pub async fn serve(transports: Transports, listener: TcpListener, token: Option<Arc<str>>) {
    let bound = match listener.local_addr() {
        Ok(bound) => bound,
        Err(err) => {
            tracing::error!(%err, "the HTTP listener has no address");
            return;
        }
    };
    let app = router(Bridge::new(transports.clone(), token, bound));
    let service = TowerToHyperService::new(app);
    let lifecycle = Arc::clone(&transports.lifecycle);
    let serve = move |stream, id| serve_connection(service.clone(), Arc::clone(&lifecycle), stream, id);
    transports.accept_loop("http", listener, Limit::Wait(MAX_CONNECTIONS), serve).await;
}

/// The endpoints behind their checks.
fn router(bridge: Bridge) -> Router {
    let open = Router::new().route("/", get(routes::root)).route("/health", get(routes::health));
    let guarded = Router::new()
        .route("/status", get(routes::status))
        .route("/commands", get(routes::commands))
        .route("/history", get(routes::history))
        .route("/execute", post(routes::execute))
        .route("/rpc", post(routes::rpc))
        .route("/daemon/stop", post(routes::daemon_stop))
        .route("/daemon/start", post(routes::daemon_start))
        .route_layer(middleware::from_fn_with_state(bridge.clone(), guard::require_token));
    open.merge(guarded)
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(guard::require_json))
        .layer(middleware::from_fn_with_state(bridge.clone(), guard::check_host))
        .with_state(bridge)
}

/// Serves one HTTP connection with hyper, with a header-read timeout.
async fn serve_connection(
    service: TowerToHyperService<Router>,
    lifecycle: Arc<Lifecycle>,
    stream: TcpStream,
    id: usize,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
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
