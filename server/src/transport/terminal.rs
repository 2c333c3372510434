//! What ties a connection's requests to their client's terminal: the standard streams each
//! `execute` with `streams: "passed"` took from the descriptors its client passed, and the
//! process group of each running command, which the `signal` method reaches by request id, and
//! the pseudo-terminal of each command run with `tty`, which `mcli/resize` reaches.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use mcli_protocol::{RESIZE_NOTIFICATION, ResizeParams};
use mcli_shared::streams::{Group, Passed};

use super::fds::PassedFds;

/// Requests of one connection that may hold passed streams or a signal route at once (as many as
/// may be in flight).
const MAX_ROUTES: usize = 64;

/// The terminal side of one connection.
#[derive(Default)]
pub struct Terminal {
    /// Descriptors received and not yet taken; empty on transports that cannot pass any.
    fds: Arc<PassedFds>,
    inner: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    /// The streams taken for each request, until its `execute` claims them.
    streams: HashMap<String, Passed>,
    /// The process groups of running commands, by request.
    groups: HashMap<String, Group>,
    /// The master sides of the pseudo-terminals of running commands, by request, for
    /// `mcli/resize`.
    ptys: HashMap<String, Arc<OwnedFd>>,
}

impl Terminal {
    /// The terminal side of a connection whose descriptors queue in `fds`, if it can get any.
    pub fn new(fds: Option<Arc<PassedFds>>) -> Terminal {
        Terminal { fds: fds.unwrap_or_default(), inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the reader, in the order the requests came, for each `execute` request with
    /// `streams: "passed"` (see `connection.rs`): request `key` takes the next three
    /// descriptors (stdin, stdout, stderr) now, before later messages can.
    pub fn take_for(&self, key: String) {
        let Some(fds) = self.fds.take(3) else { return };
        let mut fds = fds.into_iter();
        let passed = Passed { stdin: fds.next(), stdout: fds.next(), stderr: fds.next() };
        let mut routes = self.lock();
        if routes.streams.len() < MAX_ROUTES || routes.streams.contains_key(&key) {
            routes.streams.insert(key, passed);
        }
    }

    /// What the peer must be told about descriptors closed unused, once.
    pub fn overflow(&self) -> Option<String> {
        self.fds.take_overflow()
    }

    /// The streams request `key` took, once.
    pub fn claim(&self, key: &str) -> Option<Passed> {
        self.lock().streams.remove(key)
    }

    /// Routes signals for request `key` to `group` until [`Terminal::release`]; false when too
    /// many commands of this connection have routes.
    pub fn route(&self, key: &str, group: Group) -> bool {
        let mut routes = self.lock();
        if routes.groups.len() >= MAX_ROUTES && !routes.groups.contains_key(key) {
            return false;
        }
        routes.groups.insert(key.to_owned(), group);
        true
    }

    /// The process group of the command that request `key` runs.
    pub fn group(&self, key: &str) -> Option<Group> {
        self.lock().groups.get(key).cloned()
    }

    /// Routes `mcli/resize` for request `key` to the terminal of `master` until
    /// [`Terminal::release`]; false when too many commands of this connection have one.
    pub fn route_pty(&self, key: &str, master: Arc<OwnedFd>) -> bool {
        let mut routes = self.lock();
        if routes.ptys.len() >= MAX_ROUTES && !routes.ptys.contains_key(key) {
            return false;
        }
        routes.ptys.insert(key.to_owned(), master);
        true
    }

    /// Applies `text` if it is a `mcli/resize` notification; false when it is something else.
    /// A resize for a request without a terminal (or that has ended) is dropped, as
    /// notifications get no reply.
    pub fn resize_from(&self, text: &[u8]) -> bool {
        if memchr::memmem::find(text, RESIZE_NOTIFICATION.as_bytes()).is_none() {
            return false;
        }
        #[derive(serde::Deserialize)]
        struct Message {
            method: String,
            #[serde(default)]
            id: Option<serde_json::Value>,
            params: Option<serde_json::Value>,
        }
        let Ok(message) = serde_json::from_slice::<Message>(text) else { return false };
        if message.method != RESIZE_NOTIFICATION || message.id.is_some() {
            return false;
        }
        let params = message.params.and_then(|p| serde_json::from_value::<ResizeParams>(p).ok());
        let master = params.as_ref().and_then(|p| self.lock().ptys.get(&p.request_id.to_string()).cloned());
        if let (Some(params), Some(master)) = (params, master)
            && let Err(err) = mcli_shared::pty::resize(&master, params.rows, params.cols)
        {
            tracing::debug!(%err, "cannot resize a terminal");
        }
        true
    }

    /// Forgets request `key`: its streams (closing them), its signal route and its terminal.
    pub fn release(&self, key: &str) {
        let mut routes = self.lock();
        routes.streams.remove(key);
        routes.groups.remove(key);
        routes.ptys.remove(key);
    }
}
