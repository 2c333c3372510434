//! A command's own standard streams, when it gets the caller's instead of pipes: the client's
//! stdin, stdout and stderr passed to the server over the local socket, or the client's own in
//! its local mode. Also the handle through which a terminal's signals reach the command's
//! process group while it runs.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Descriptors a command reads and writes itself; a stream left `None` is piped as usual.
#[derive(Debug, Default)]
pub struct Passed {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Passed {
    /// Copies of this process's own stdin, stdout and stderr (the client's local mode).
    pub fn own() -> io::Result<Passed> {
        Ok(Passed {
            stdin: Some(io::stdin().as_fd().try_clone_to_owned()?),
            stdout: Some(io::stdout().as_fd().try_clone_to_owned()?),
            stderr: Some(io::stderr().as_fd().try_clone_to_owned()?),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.stdin.is_none() && self.stdout.is_none() && self.stderr.is_none()
    }
}

/// Whether `fd` carries input worth reading for a command that cannot take the descriptor
/// itself (a built-in, a worker call): not a terminal (which would be read until the user types
/// Ctrl-D), and not /dev/null. The same rule the client applies to its own stdin when it
/// forwards it as `mcli/stdin`.
pub fn is_input(fd: &OwnedFd) -> bool {
    if nix::unistd::isatty(fd.as_fd()).unwrap_or(false) {
        return false;
    }
    let Ok(stat) = nix::sys::stat::fstat(fd.as_fd()) else { return false };
    let is_char_device = (stat.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFCHR;
    !(is_char_device && nix::sys::stat::stat("/dev/null").is_ok_and(|null| null.st_rdev == stat.st_rdev))
}

/// Reads `fd` to its end on a thread of its own, in chunks on a bounded channel (the reader
/// waits for the command), for a command that takes its input as a stream. The thread also
/// ends, within [`READ_CHECK`] ms, once the command no longer takes input: a client's stdin
/// that never closes does not keep it.
pub fn read_in_chunks(fd: OwnedFd) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(n) = read_when_ready(fd.as_fd(), &mut buf, || tx.is_closed()) {
            if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                return;
            }
        }
    });
    rx
}

/// How often, in milliseconds, a reader waiting for input looks whether it was given up.
const READ_CHECK: u16 = 200;

/// The next read of `fd` into `buf`, once there is something to read: `None` at its end, on an
/// error, or once `given_up` says so (looked at every [`READ_CHECK`] ms while nothing comes).
pub(crate) fn read_when_ready(fd: BorrowedFd<'_>, buf: &mut [u8], given_up: impl Fn() -> bool) -> Option<usize> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        if given_up() {
            return None;
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(READ_CHECK)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return None,
        }
        match nix::unistd::read(fd, buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(_) => return None,
        }
    }
}

/// Writes all of `data` to `file` off the async threads: the descriptor is the client's, in
/// blocking mode, and may be a slow terminal or a pipe whose reader does not read (a pager
/// waiting for a key). Once `cancel` fires, the write goes on while the reader takes it (what
/// the command said as it was ended still shows) and gives up when the reader has taken nothing
/// for [`WRITE_CHECK`] ms; dropping the future gives it up at once. Neither the call nor a
/// thread stays blocked in the write.
pub async fn write_blocking(file: &Arc<File>, data: Bytes, cancel: &CancellationToken) -> io::Result<()> {
    let file = Arc::clone(file);
    let abandon = Abandon::default();
    let abandoned = Arc::clone(&abandon.0);
    let cancel = cancel.clone();
    tokio::task::spawn_blocking(move || write_while_taken(&file, &data, &cancel, &abandoned))
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
}

/// How long, in milliseconds, a write waits for room before it looks whether it was given up.
const WRITE_CHECK: u16 = 200;

/// Set when dropped: tells the writing thread to give up.
#[derive(Default)]
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Writes `data` to `file` until it is all written, `abandoned` is set, or `cancel` has fired
/// and the reader takes nothing. A pipe, socket or terminal is written once it has room, at
/// most `PIPE_BUF` bytes at a time (what a pipe with room takes without blocking), so the flags
/// are looked at between writes; a regular file is written whole.
fn write_while_taken(
    file: &File,
    mut data: &[u8],
    cancel: &CancellationToken,
    abandoned: &AtomicBool,
) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let given_up = || io::Error::new(io::ErrorKind::Interrupted, "cancelled");
    let whole = file.metadata().is_ok_and(|m| m.file_type().is_file());
    while !data.is_empty() {
        if abandoned.load(Ordering::Relaxed) {
            return Err(given_up());
        }
        if !whole {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, PollTimeout::from(WRITE_CHECK)) {
                Ok(0) if cancel.is_cancelled() => return Err(given_up()),
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let len = if whole { data.len() } else { data.len().min(nix::libc::PIPE_BUF) };
        match (&*file).write(&data[..len]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // A descriptor the client left non-blocking: wait for room as for any other.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && !whole => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The process group of a running command, for signals from its client's terminal. A signal
/// that comes before the command has started (its client saw its first output before the
/// server learnt its pid) waits for it; once the leader is reaped the group is gone (its id may
/// be reused) and signals are refused.
#[derive(Debug, Clone, Default)]
pub struct Group(Arc<Mutex<GroupState>>);

#[derive(Debug, Default)]
struct GroupState {
    leader: Option<Pid>,
    /// Signals that came before the command started, delivered when it does (bounded).
    pending: Vec<Signal>,
    ended: bool,
}

/// Signals kept for a command that has not started yet.
const MAX_PENDING: usize = 8;

impl Group {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group is `leader`'s, from now until [`Group::clear`]; signals that waited for it are
    /// sent now.
    pub fn set(&self, leader: Option<Pid>) {
        let mut state = self.lock();
        state.leader = leader;
        if let Some(pid) = leader {
            for signal in std::mem::take(&mut state.pending) {
                let _ = killpg(pid, signal);
            }
        }
    }

    /// The command is over: nothing is signalled any more.
    pub fn clear(&self) {
        let mut state = self.lock();
        (state.leader, state.ended) = (None, true);
        state.pending.clear();
    }

    /// Sends `signal` to the group, or keeps it until the command starts; false when the
    /// command is over (or too many wait).
    pub fn signal(&self, signal: Signal) -> bool {
        // The lock is held while signalling, so the group cannot be cleared (and its leader
        // reaped and its id reused) in between.
        let mut state = self.lock();
        match state.leader {
            Some(pid) => killpg(pid, signal).is_ok(),
            None if !state.ended && state.pending.len() < MAX_PENDING => {
                state.pending.push(signal);
                true
            }
            None => false,
        }
    }
}
