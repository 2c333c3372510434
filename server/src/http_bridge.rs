//! The task that owns the HTTP bridge's listener: it serves the bridge the server starts with,
//! and puts in its place the one a reload asks for through [`HttpSwitch`](crate::http_switch).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::http_switch::{Request, Wanted, wanted};
use crate::inherited;
use crate::state::State;
use crate::transport::{self, Transports};

/// The bridge running now: its stop switch and what it was asked to be.
struct Running {
    stop: CancellationToken,
    /// The task serving the listener: it has closed the listener once it has ended.
    served: tokio::task::JoinHandle<()>,
    wanted: Wanted,
}

/// What the owning task holds: what a bridge is served with, and the one running.
struct Bridge {
    state: State,
    transports: Transports,
    token: Arc<str>,
    running: Option<Running>,
}

/// Starts the task that owns the bridge, serving `listener` first if the server starts with one
/// (`pinned`: asked for with `--http`).
pub fn start(state: &State, transports: Transports, token: Arc<str>, listener: Option<TcpListener>, pinned: bool) {
    let (tx, mut requests) = mpsc::channel::<Request>(4);
    if !state.http.attach(tx, pinned) {
        tracing::error!("the HTTP bridge was started twice");
        return;
    }
    let mut bridge = Bridge { state: State::clone(state), transports, token, running: None };
    if let Some(listener) = listener {
        // What the listener was asked for, to compare with what a reloaded config asks.
        let config = state.config();
        let asked = wanted(&config, state.listeners.auto_started())
            .unwrap_or(Wanted { addr: None, require_token: config.api_daemon.require_token });
        bridge.serve(listener, asked);
    }
    tokio::spawn(async move {
        loop {
            let (wanted, reply) = tokio::select! {
                request = requests.recv() => match request { Some(request) => request, None => return },
                () = bridge.state.lifecycle.stop.cancelled() => return,
            };
            let result = bridge.change(wanted).await;
            let _ = reply.send(result);
        }
    });
}

impl Bridge {
    /// Puts the bridge `wanted` in place of the running one. The new address is bound first, so
    /// that a bridge that cannot move keeps serving where it was; only a new address on the
    /// port the bridge holds now needs the old listener closed first (and taken again if that
    /// fails).
    async fn change(&mut self, wanted: Wanted) -> Result<(), String> {
        let now = self.running.as_ref().map(|r| r.wanted.clone());
        let now = now.unwrap_or(Wanted { addr: None, require_token: wanted.require_token });
        if now == wanted {
            return Ok(());
        }
        let bound_before = self.state.http.addr();
        let Some(addr) = wanted.addr.clone() else {
            self.stop().await;
            tracing::info!("the HTTP bridge is off");
            return Ok(());
        };
        let same_port = bound_before.as_deref().and_then(port_of).is_some_and(|port| Some(port) == port_of(&addr));
        let listener = match TcpListener::bind(&addr).await {
            Ok(listener) => listener,
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && same_port => {
                self.stop().await;
                match TcpListener::bind(&addr).await {
                    Ok(listener) => listener,
                    Err(err) => return Err(self.take_back(now, bound_before, &addr, &err).await),
                }
            }
            Err(err) => {
                let stays = bound_before.map_or_else(|| "it stays off".to_owned(), |old| format!("it stays on {old}"));
                return Err(format!("the HTTP bridge cannot listen on {addr}: {err}; {stays}"));
            }
        };
        self.stop().await;
        self.serve(listener, wanted);
        Ok(())
    }

    /// Stops the bridge that runs, if one does, and waits until its listener is closed.
    async fn stop(&mut self) {
        if let Some(old) = self.running.take() {
            old.stop.cancel();
            let _ = old.served.await;
            self.state.listeners.forget(inherited::HTTP);
            self.state.http.set_addr(None);
        }
    }

    /// After the old listener closed and the new address failed: takes the old address (as it
    /// was bound, `bound_before`) back if it can, and says what happened.
    async fn take_back(
        &mut self,
        was: Wanted,
        bound_before: Option<String>,
        addr: &str,
        err: &std::io::Error,
    ) -> String {
        let why = format!("the HTTP bridge cannot listen on {addr}: {err}");
        if let Some(old) = bound_before
            && let Ok(listener) = TcpListener::bind(&old).await
        {
            self.serve(listener, was);
            return format!("{why}; it stays on {old}");
        }
        format!("{why}; it is off")
    }

    /// Serves the bridge on `listener` (asked for as `wanted`) until it is switched off or the
    /// server stops.
    fn serve(&mut self, listener: TcpListener, wanted: Wanted) {
        use std::os::fd::AsFd as _;
        let state = &self.state;
        let addr = listener.local_addr().map(|a| a.to_string()).ok();
        state.listeners.keep(inherited::HTTP, listener.as_fd());
        let http_token = if wanted.require_token {
            Some(Arc::clone(&self.token))
        } else {
            tracing::warn!("the HTTP bridge asks for no token (require_token = false); any local process can use it");
            None
        };
        let stop = CancellationToken::new();
        let served = transport::http::serve(self.transports.clone(), listener, http_token);
        let stopped = stop.clone();
        let served = state.lifecycle.tasks.spawn(async move {
            tokio::select! {
                () = served => {}
                () = stopped.cancelled() => {}
            }
        });
        tracing::info!(addr = addr.as_deref().unwrap_or("?"), "the HTTP bridge listens");
        state.http.set_addr(addr);
        self.running = Some(Running { stop, served, wanted });
    }
}

/// The port of `HOST:PORT`.
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}
