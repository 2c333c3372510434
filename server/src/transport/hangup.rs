//! Telling a peer that is gone from one that has only finished sending. Each stream transport
//! says here how its peer hangs up; the connection asks only this trait.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use super::fds::{FdReader, PassedFds};

/// How often a connection whose peer stopped sending checks whether the peer is gone.
pub const HANGUP_CHECK: Duration = Duration::from_millis(200);

/// The reading side of a connection, asked whether its peer is still there.
pub trait Hangup {
    /// Whether the peer has gone away entirely, as opposed to only having finished sending (a
    /// half-close, after which replies are still read).
    fn peer_hung_up(&self) -> bool;

    /// Whether the end of the peer's input means that the peer is gone (and its running
    /// commands are to end), rather than a half-close that still waits for the replies.
    fn end_of_input_is_hang_up(&self) -> bool {
        false
    }

    /// Where descriptors the peer passes are queued: the local socket only.
    fn passed_fds(&self) -> Option<Arc<PassedFds>> {
        None
    }
}

impl Hangup for FdReader {
    fn peer_hung_up(&self) -> bool {
        self.half().peer_hung_up()
    }

    fn passed_fds(&self) -> Option<Arc<PassedFds>> {
        Some(self.fds())
    }
}

impl Hangup for tokio::net::unix::OwnedReadHalf {
    fn peer_hung_up(&self) -> bool {
        let stream: &tokio::net::UnixStream = self.as_ref();
        both_directions_shut(stream.as_fd())
    }
}

impl Hangup for tokio::net::tcp::OwnedReadHalf {
    /// A TCP peer that closed entirely looks like a half-close until something is written to
    /// it: its requests then end when their output cannot be delivered or when a keepalive
    /// probe draws a reset (see `tcp::keep_alive`), while a real half-close gets its replies.
    fn peer_hung_up(&self) -> bool {
        let stream: &tokio::net::TcpStream = self.as_ref();
        both_directions_shut(stream.as_fd())
    }
}

impl Hangup for tokio::io::Stdin {
    /// Open standard input has not hung up; its end is.
    fn peer_hung_up(&self) -> bool {
        false
    }

    /// The editor that spawned the server went away: the session ends, and its commands with it.
    fn end_of_input_is_hang_up(&self) -> bool {
        true
    }
}

/// Whether both directions of the socket `fd` are shut (POLLHUP is reported whatever events
/// are asked for).
fn both_directions_shut(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}
