//! The HTTP bridge switched on, off or to another address while the server runs, by a reload
//! of the config (`[api_daemon] enabled`, `host`, `port`, `use_random_port`, `auto_start`,
//! `require_token`). One task owns the bridge's listener; a reload asks it for the bridge the new
//! config wants and gets the address it then listens on. Connections already open on an old
//! listener are served to their end; only the listener closes. A bridge asked for with
//! `--http` on the command line is the flag's: the config does not switch it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use mcli_shared::config::Config;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::inherited;
use crate::state::State;
use crate::transport::{self, Transports};

/// The HTTP bridge as the server runs it now, and the way to change it.
#[derive(Default)]
pub struct HttpSwitch {
    /// Where the bridge listens now (`None`: off).
    addr: RwLock<Option<String>>,
    /// Woken when the address changes, for the name guard to write the server file anew.
    pub changed: Notify,
    /// The task that owns the listener.
    control: OnceLock<mpsc::Sender<Request>>,
    /// The bridge was asked for with `--http`: reloads leave it alone.
    pinned: AtomicBool,
}

/// The bridge a config wants: its address (or off) and whether it asks for the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub addr: Option<String>,
    pub require_token: bool,
}

type Request = (Wanted, oneshot::Sender<Result<(), String>>);

impl HttpSwitch {
    /// Where the bridge listens now.
    pub fn addr(&self) -> Option<String> {
        self.addr.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set_addr(&self, addr: Option<String>) {
        *self.addr.write().unwrap_or_else(std::sync::PoisonError::into_inner) = addr;
        self.changed.notify_waiters();
    }

    /// Whether a reload may switch the bridge: not when `--http` decided it, nor in a session
    /// that serves no bridge at all (`--stdio`).
    pub fn is_switchable(&self) -> bool {
        !self.pinned.load(Ordering::Relaxed) && self.control.get().is_some()
    }

    /// Asks for the bridge `wanted` and waits until it is in place (or failed, saying why).
    pub async fn switch(&self, wanted: Wanted) -> Result<(), String> {
        let Some(control) = self.control.get() else {
            return Err("this server serves no HTTP bridge (an editor session)".to_owned());
        };
        let (tx, rx) = oneshot::channel();
        control.send((wanted, tx)).await.map_err(|_| "the server is shutting down".to_owned())?;
        rx.await.unwrap_or_else(|_| Err("the server is shutting down".to_owned()))
    }
}

/// The bridge `config` wants, for a server started on demand or not.
pub fn wanted(config: &Config, auto_started: bool) -> Result<Wanted, String> {
    let api = &config.api_daemon;
    let on = api.enabled && (!auto_started || api.auto_start);
    let addr = on.then(|| api.http_addr());
    if let Some(addr) = &addr
        && !api.require_token
        && !is_loopback(addr)
    {
        return Err(format!("`api_daemon.require_token = false` is allowed only for a loopback address, not {addr}"));
    }
    Ok(Wanted { addr, require_token: api.require_token })
}

/// Whether `addr` (`HOST:PORT`) is a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_matches(['[', ']']);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The bridge running now: its stop switch and what it was asked to be.
struct Running {
    stop: CancellationToken,
    /// The task serving the listener: it has closed the listener once it has ended.
    served: tokio::task::JoinHandle<()>,
    wanted: Wanted,
}

/// Starts the task that owns the bridge, serving `listener` first if the server starts with one
/// (`pinned`: asked for with `--http`).
pub fn start(state: &State, transports: Transports, token: Arc<str>, listener: Option<TcpListener>, pinned: bool) {
    let switch = &state.http;
    switch.pinned.store(pinned, Ordering::Relaxed);
    let (tx, mut requests) = mpsc::channel::<Request>(4);
    if switch.control.set(tx).is_err() {
        tracing::error!("the HTTP bridge was started twice");
        return;
    }
    // What the listener was asked for, to compare with what a reloaded config asks.
    let config = state.config();
    let asked = wanted(&config, state.listeners.auto_started())
        .unwrap_or(Wanted { addr: None, require_token: config.api_daemon.require_token });
    let mut running = listener.map(|listener| serve(state, &transports, &token, listener, asked));
    let state = State::clone(state);
    tokio::spawn(async move {
        loop {
            let (wanted, reply) = tokio::select! {
                request = requests.recv() => match request { Some(request) => request, None => return },
                () = state.lifecycle.stop.cancelled() => return,
            };
            let result = change(&state, &transports, &token, &mut running, wanted).await;
            let _ = reply.send(result);
        }
    });
}

/// Puts the bridge `wanted` in place of `running`. The new address is bound first, so that a
/// bridge that cannot move keeps serving where it was; only a new address on the port the
/// bridge holds now needs the old listener closed first (and taken again if that fails).
async fn change(
    state: &State,
    transports: &Transports,
    token: &Arc<str>,
    running: &mut Option<Running>,
    wanted: Wanted,
) -> Result<(), String> {
    let now = running
        .as_ref()
        .map(|r| r.wanted.clone())
        .unwrap_or(Wanted { addr: None, require_token: wanted.require_token });
    if now == wanted {
        return Ok(());
    }
    let bound_before = state.http.addr();
    let Some(addr) = wanted.addr.clone() else {
        stop(state, running).await;
        tracing::info!("the HTTP bridge is off");
        return Ok(());
    };
    let same_port = bound_before.as_deref().and_then(port_of).is_some_and(|port| Some(port) == port_of(&addr));
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && same_port => {
            stop(state, running).await;
            match TcpListener::bind(&addr).await {
                Ok(listener) => listener,
                Err(err) => {
                    return Err(take_back(state, transports, token, running, now, bound_before, &addr, &err).await);
                }
            }
        }
        Err(err) => {
            let stays = bound_before.map_or_else(|| "it stays off".to_owned(), |old| format!("it stays on {old}"));
            return Err(format!("the HTTP bridge cannot listen on {addr}: {err}; {stays}"));
        }
    };
    stop(state, running).await;
    *running = Some(serve(state, transports, token, listener, wanted));
    Ok(())
}

/// Stops the bridge that runs, if one does, and waits until its listener is closed.
async fn stop(state: &State, running: &mut Option<Running>) {
    if let Some(old) = running.take() {
        old.stop.cancel();
        let _ = old.served.await;
        state.listeners.forget(inherited::HTTP);
        state.http.set_addr(None);
    }
}

/// After the old listener closed and the new address failed: takes the old address back if it
/// can, and says what happened.
#[allow(clippy::too_many_arguments)]
async fn take_back(
    state: &State,
    transports: &Transports,
    token: &Arc<str>,
    running: &mut Option<Running>,
    was: Wanted,
    bound_before: Option<String>,
    addr: &str,
    err: &std::io::Error,
) -> String {
    let why = format!("the HTTP bridge cannot listen on {addr}: {err}");
    if let Some(old) = bound_before
        && let Ok(listener) = TcpListener::bind(&old).await
    {
        *running = Some(serve(state, transports, token, listener, was));
        return format!("{why}; it stays on {old}");
    }
    format!("{why}; it is off")
}

/// The port of `HOST:PORT`.
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Serves the bridge on `listener` (asked for as `wanted`) until it is switched off or the
/// server stops.
fn serve(state: &State, transports: &Transports, token: &Arc<str>, listener: TcpListener, wanted: Wanted) -> Running {
    use std::os::fd::AsFd as _;
    let addr = listener.local_addr().map(|a| a.to_string()).ok();
    state.listeners.keep(inherited::HTTP, listener.as_fd());
    let http_token = if wanted.require_token {
        Some(Arc::clone(token))
    } else {
        tracing::warn!("the HTTP bridge asks for no token (require_token = false); any local process can use it");
        None
    };
    let stop = CancellationToken::new();
    let served = transport::http::serve(transports.clone(), listener, http_token);
    let stopped = stop.clone();
    let served = state.lifecycle.tasks.spawn(async move {
        tokio::select! {
            () = served => {}
            () = stopped.cancelled() => {}
        }
    });
    tracing::info!(addr = addr.as_deref().unwrap_or("?"), "the HTTP bridge listens");
    state.http.set_addr(addr);
    Running { stop, served, wanted }
}
