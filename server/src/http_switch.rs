//! The HTTP bridge switched on, off or to another address while the server runs, by a reload
//! of the config (`[api_daemon] enabled`, `host`, `port`, `use_random_port`, `auto_start`,
//! `require_token`). One task owns the bridge's listener; a reload asks it for the bridge the new
//! config wants and gets the address it then listens on. Connections already open on an old
//! listener are served to their end; only the listener closes. A bridge asked for with
//! `--http` on the command line is the flag's: the config does not switch it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

use mcli_shared::config::Config;
use tokio::sync::{Notify, mpsc, oneshot};

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

/// A request to the owning task: the bridge wanted, and where to say how it went.
pub type Request = (Wanted, oneshot::Sender<Result<(), String>>);

impl HttpSwitch {
    /// Where the bridge listens now.
    pub fn addr(&self) -> Option<String> {
        self.addr.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn set_addr(&self, addr: Option<String>) {
        *self.addr.write().unwrap_or_else(std::sync::PoisonError::into_inner) = addr;
        self.changed.notify_waiters();
    }

    /// Marks the bridge as `--http`'s (`pinned`) and takes the channel to the task that owns
    /// it; `false` when a task was set up already.
    pub fn attach(&self, control: mpsc::Sender<Request>, pinned: bool) -> bool {
        self.pinned.store(pinned, Ordering::Relaxed);
        self.control.set(control).is_ok()
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
    if let Some(addr) = &addr {
        allowed(addr, api.require_token)?;
    }
    Ok(Wanted { addr, require_token: api.require_token })
}

/// Checks that a bridge at `addr` may go without the token: only on loopback.
pub fn allowed(addr: &str, require_token: bool) -> Result<(), String> {
    if require_token || is_loopback(addr) {
        Ok(())
    } else {
        Err(format!("`api_daemon.require_token = false` is allowed only for a loopback address, not {addr}"))
    }
}

/// Whether `addr` (`HOST:PORT`) is a loopback address.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_matches(['[', ']']);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
