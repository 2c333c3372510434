//! Listening sockets the server is handed at start instead of binding them itself: by a service
//! manager (systemd's socket activation) or by the server it replaces (`mcli-server restart`
//! hands its listeners over, so that no client is refused while the new one starts). Both speak
//! the same protocol: the descriptors from 3 up, their number in `LISTEN_FDS` (for this process
//! when `LISTEN_PID` says so; the `listenfd` crate checks and clears both), their names in
//! `LISTEN_FDNAMES`.
//!
//! A unix stream socket is the local socket; a TCP socket named `tcp` is the JSON-RPC TCP
//! listener, one named `metrics` the open `/metrics` listener, and any other TCP socket the
//! HTTP bridge (name it `http`).

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use anyhow::bail;
use listenfd::ListenFd;

/// The first descriptor of the protocol.
pub const FIRST_FD: u32 = 3;
/// The name `restart` gives the local socket, and the names of the TCP listeners.
pub const SOCKET: &str = "socket";
pub const TCP: &str = "tcp";
pub const HTTP: &str = "http";
pub const METRICS: &str = "metrics";

/// What the environment handed over.
#[derive(Debug, Default)]
pub struct Inherited {
    pub socket: Option<UnixListener>,
    pub tcp: Option<TcpListener>,
    pub http: Option<TcpListener>,
    /// The open `/metrics` listener (`[api_daemon] metrics_addr`).
    pub metrics: Option<TcpListener>,
    /// How many descriptors were announced, from [`FIRST_FD`] up: the daemon keeps those open.
    pub count: u32,
}

impl Inherited {
    /// Takes the listeners that the environment announces. It must run while this process has
    /// one thread and has opened nothing yet: it reads and clears environment variables, and
    /// trusts descriptors 3 and up to be what they are said to be.
    pub fn take() -> anyhow::Result<Inherited> {
        let mut fds = ListenFd::from_env();
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|names| names.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        let mut inherited = Inherited { count: u32::try_from(fds.len()).unwrap_or(u32::MAX), ..Inherited::default() };
        for index in 0..fds.len() {
            let name = names.get(index).map_or("", String::as_str);
            inherited.adopt(&mut fds, index, name)?;
        }
        Ok(inherited)
    }

    /// Takes descriptor `index` (named `name`) as the listener it is.
    fn adopt(&mut self, fds: &mut ListenFd, index: usize, name: &str) -> anyhow::Result<()> {
        let fd = FIRST_FD as usize + index;
        if let Ok(Some(socket)) = fds.take_unix_listener(index) {
            require_listening(&socket, fd)?;
            if self.socket.replace(socket).is_some() {
                bail!("more than one unix socket was handed over (descriptor {fd}); mcli-server listens on one");
            }
            return Ok(());
        }
        match fds.take_tcp_listener(index) {
            Ok(Some(listener)) => {
                require_listening(&listener, fd)?;
                let (slot, what) = match name {
                    TCP => (&mut self.tcp, "TCP listener named `tcp`"),
                    METRICS => (&mut self.metrics, "metrics listener"),
                    _ => (&mut self.http, "HTTP listener"),
                };
                if slot.replace(listener).is_some() {
                    bail!("more than one {what} was handed over (descriptor {fd})");
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(err) => {
                bail!("descriptor {fd} handed over by the service manager is not a listening stream socket: {err}")
            }
        }
    }
}

/// Fails unless `socket` listens: a service manager configured with `Accept=yes` passes one
/// connection instead, which this server cannot serve as a listener.
fn require_listening(socket: &impl std::os::fd::AsFd, fd: usize) -> anyhow::Result<()> {
    use nix::sys::socket::{getsockopt, sockopt::AcceptConn};
    match getsockopt(socket, AcceptConn) {
        Ok(true) => Ok(()),
        Ok(false) => {
            bail!("descriptor {fd} handed over is a connection, not a listening socket (with systemd, use Accept=no)")
        }
        Err(err) => bail!("descriptor {fd} handed over cannot be checked: {err}"),
    }
}
