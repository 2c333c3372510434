//! Signals the terminal sends the client, forwarded to the command it runs through the server:
//! a window change, Ctrl-Z (the command is stopped, then the client stops itself), `fg` (the
//! client is continued, then the command), quit and hang-up. Each signal wakes the client's wait
//! through a socket pair of its own (`signal-hook` writes to it from the handler); the wait then
//! sends a `signal` request for the command.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use signal_hook::consts::{SIGCONT, SIGHUP, SIGQUIT, SIGTERM, SIGTSTP, SIGWINCH};

/// The signals forwarded, with their names in the protocol.
const FORWARDED: [(i32, &str); 5] =
    [(SIGWINCH, "WINCH"), (SIGTSTP, "TSTP"), (SIGCONT, "CONT"), (SIGQUIT, "QUIT"), (SIGHUP, "HUP")];
/// Forwarded too when the terminal is in raw mode for the call (`--tty`): the client must not
/// die with it raw.
const FORWARDED_WITH_RAW_TERMINAL: [(i32, &str); 1] = [(SIGTERM, "TERM")];

/// The handlers in place: one readable end per signal.
pub struct Forwarder {
    pipes: Vec<(OwnedFd, &'static str)>,
    ids: Vec<signal_hook::SigId>,
}

impl Forwarder {
    /// Puts the handlers in place; from now on these signals no longer have their default
    /// effect on the client (stopping it, ending it) but are forwarded.
    pub fn install(raw_terminal: bool) -> io::Result<Forwarder> {
        let mut forwarder = Forwarder { pipes: Vec::new(), ids: Vec::new() };
        let extra = if raw_terminal { &FORWARDED_WITH_RAW_TERMINAL[..] } else { &[] };
        for &(signal, name) in FORWARDED.iter().chain(extra) {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            forwarder.ids.push(signal_hook::low_level::pipe::register(signal, write)?);
            forwarder.pipes.push((OwnedFd::from(read), name));
        }
        Ok(forwarder)
    }

    /// The descriptors to wait on, in order.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.pipes.iter().map(|(fd, _)| fd.as_fd())
    }

    /// The name of the signal of descriptor `index`, its wake-up drained.
    pub fn fired(&self, index: usize) -> Option<&'static str> {
        let (fd, name) = self.pipes.get(index)?;
        let mut drain = [0u8; 16];
        while matches!(nix::unistd::read(fd, &mut drain), Ok(n) if n > 0) {}
        Some(name)
    }

    /// What the client does itself after forwarding `name`: Ctrl-Z stops it too, as a shell
    /// would stop the whole job.
    pub fn after_forwarding(name: &str) {
        if name == "TSTP" {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The size of the terminal on standard input (24 x 80 when it cannot be read).
pub fn terminal_size() -> mcli_protocol::TtySize {
    match rustix::termios::tcgetwinsize(io::stdin().as_fd()) {
        Ok(size) if size.ws_row > 0 && size.ws_col > 0 => {
            mcli_protocol::TtySize { rows: size.ws_row, cols: size.ws_col }
        }
        _ => mcli_protocol::TtySize { rows: 24, cols: 80 },
    }
}
