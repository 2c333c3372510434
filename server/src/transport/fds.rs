//! Descriptors passed over the local socket (`SCM_RIGHTS`): the reading side of a socket
//! connection receives them with the bytes they came with (`recvmsg`, close-on-exec), and queues
//! them, in order and bounded, until the `execute` request that asked for them
//! (`streams: "passed"`) takes them. A peer that sends more than the queue holds has the extras
//! closed and is told so.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, recvmsg};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;

/// Descriptors one connection may have waiting for their requests: the streams of 8 requests.
pub const MAX_QUEUED_FDS: usize = 24;
/// Descriptors taken from one `recvmsg`; the kernel closes what is over it.
const MAX_PER_MESSAGE: usize = 8;

/// The descriptors a connection received and no request has taken yet.
#[derive(Default)]
pub struct PassedFds {
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    fds: VecDeque<OwnedFd>,
    /// Descriptors closed since the peer was last told: over the bound, or cut off by the kernel.
    dropped: usize,
    /// Whether the kernel cut some off (more in one message than [`MAX_PER_MESSAGE`]).
    truncated: bool,
}

impl PassedFds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, received: impl Iterator<Item = OwnedFd>, truncated: bool) {
        let mut queue = self.lock();
        for fd in received {
            if queue.fds.len() < MAX_QUEUED_FDS {
                queue.fds.push_back(fd);
            } else {
                queue.dropped += 1;
            }
        }
        queue.truncated |= truncated;
    }

    /// The next `n` descriptors in the order they came, or none if fewer wait.
    pub fn take(&self, n: usize) -> Option<Vec<OwnedFd>> {
        let mut queue = self.lock();
        (queue.fds.len() >= n).then(|| queue.fds.drain(..n).collect())
    }

    /// What the peer must be told about descriptors that were closed unused, once.
    pub fn take_overflow(&self) -> Option<String> {
        let mut queue = self.lock();
        if queue.dropped == 0 && !queue.truncated {
            return None;
        }
        let message = if queue.truncated {
            format!(
                "too many descriptors in one message: at most {MAX_PER_MESSAGE} are received with one request; the extras were closed"
            )
        } else {
            format!(
                "too many descriptors passed on this connection: at most {MAX_QUEUED_FDS} wait for their requests; {} were closed",
                queue.dropped
            )
        };
        (queue.dropped, queue.truncated) = (0, false);
        Some(message)
    }
}

/// The reading half of a local-socket connection, receiving passed descriptors with the bytes.
pub struct FdReader {
    half: OwnedReadHalf,
    fds: Arc<PassedFds>,
}

impl FdReader {
    pub fn new(half: OwnedReadHalf) -> Self {
        FdReader { half, fds: Arc::default() }
    }

    /// The socket's reading half.
    pub fn half(&self) -> &OwnedReadHalf {
        &self.half
    }

    /// Where the descriptors received on this connection wait.
    pub fn fds(&self) -> Arc<PassedFds> {
        Arc::clone(&self.fds)
    }
}

impl AsyncRead for FdReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let stream: &UnixStream = this.half.as_ref();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match stream.try_io(Interest::READABLE, || receive(stream, unfilled, &this.fds)) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

/// One `recvmsg`: the bytes into `buf`, the descriptors into `fds`.
fn receive(stream: &UnixStream, buf: &mut [u8], fds: &PassedFds) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let message = recvmsg(stream, &mut [IoSliceMut::new(buf)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let truncated = message.flags.contains(ReturnFlags::CTRUNC);
    let mut received = Vec::new();
    for ancillary in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = ancillary {
            received.extend(passed);
        }
    }
    if !received.is_empty() || truncated {
        fds.push(received.into_iter(), truncated);
    }
    Ok(message.bytes)
}
