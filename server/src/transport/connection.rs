//! One client connection on a stream transport: reads framed messages, runs each in its own
//! task, and writes replies and notifications through one ordered, bounded queue. A connection's
//! failure ends that connection only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use jsonrpsee::Methods;
use mcli_protocol::framing::{Frame, FrameCodec, Framing, encode_frame};
use mcli_protocol::{AUTHENTICATE_METHOD, STDIN_NOTIFICATION, StdinParams, code};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::context::ConnectionCtx;
use super::dispatch::{self, error_reply};
use crate::state::State;

/// Requests one connection may have in flight; reading pauses beyond it.
const MAX_IN_FLIGHT: usize = 64;
/// How many queued messages the writer coalesces into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// How often a connection whose peer stopped sending checks whether the peer is gone.
const HANGUP_CHECK: Duration = Duration::from_millis(200);

/// Tells whether the peer of a connection has gone away entirely, as opposed to only having
/// finished sending (a half-close, after which replies are still read).
pub trait Hangup {
    fn peer_hung_up(&self) -> bool;
}

/// Whether both directions of the socket `fd` are shut (POLLHUP is reported whatever events
/// are asked for).
fn both_directions_shut(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

impl Hangup for tokio::net::unix::OwnedReadHalf {
    fn peer_hung_up(&self) -> bool {
        use std::os::fd::AsFd;
        let stream: &tokio::net::UnixStream = self.as_ref();
        both_directions_shut(stream.as_fd())
    }
}

impl Hangup for tokio::net::tcp::OwnedReadHalf {
    /// A TCP peer that closed entirely looks like a half-close until something is written to
    /// it: its requests then end when their output cannot be delivered or when a keepalive
    /// probe draws a reset (see `tcp::keep_alive`), while a real half-close gets its replies.
    fn peer_hung_up(&self) -> bool {
        use std::os::fd::AsFd;
        let stream: &tokio::net::TcpStream = self.as_ref();
        both_directions_shut(stream.as_fd())
    }
}

impl Hangup for tokio::io::Stdin {
    /// Open standard input has not hung up; its end is handled by [`Peer::eof_ends_session`].
    fn peer_hung_up(&self) -> bool {
        false
    }
}

/// Who is at the other end, and what the transport asks of it.
pub struct Peer {
    pub id: usize,
    /// `socket`, `stdio` or `tcp`, for the logs and the history.
    pub transport: &'static str,
    /// The token the first message must present (`authenticate`), on transports that need one.
    pub token: Option<Arc<str>>,
    /// The end of the peer's input ends the session and its running commands (stdio: the editor
    /// went away); otherwise it may be a half-close that still waits for replies.
    pub eof_ends_session: bool,
}

/// The largest message a peer may send before it has authenticated.
const MAX_FRAME_BEFORE_AUTH: usize = 64 * 1024;

/// How long a peer that must authenticate has to send its first message.
const AUTH_WINDOW: Duration = Duration::from_secs(5);

/// Serves one connection until the peer closes it, its framing breaks, or the server closes
/// connections at the end of shutdown.
pub async fn serve<R, W>(state: State, methods: Methods, peer: Peer, reader: R, writer: W, max_frame: usize)
where
    R: AsyncRead + Hangup + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = peer.id;
    let mut unauthenticated = peer.token;
    let (ctx, rx) = ConnectionCtx::new(&state.lifecycle, id, peer.transport, true);
    let first_limit = if unauthenticated.is_some() { max_frame.min(MAX_FRAME_BEFORE_AUTH) } else { max_frame };
    let mut frames = FramedRead::new(reader, FrameCodec::detect(first_limit));
    let auth_deadline = tokio::time::Instant::now() + AUTH_WINDOW;
    let mut pending = Some((writer, rx));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tracing::debug!(connection = id, "connected");
    let busy = state.lifecycle.busy();

    loop {
        let next = tokio::select! {
            next = frames.next() => next,
            () = state.lifecycle.close_connections.cancelled() => break,
            () = tokio::time::sleep_until(auth_deadline), if unauthenticated.is_some() => {
                tracing::debug!(connection = id, "no authentication in time; closing");
                break;
            }
        };
        // The writer starts with the first message, once the framing is known.
        if let Some((writer, rx)) = pending.take() {
            let framing = frames.decoder().framing().unwrap_or(Framing::Lines);
            state.lifecycle.tasks.spawn(write_loop(writer, rx, framing, ctx.hang_up_token()));
        }
        let frame = match next {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(err)) => {
                tracing::debug!(connection = id, %err, "framing broken; closing");
                let reply = error_reply("null", code::PARSE_ERROR, &format!("parse error: {err}"));
                let _ = ctx.outgoing.send(reply.into()).await;
                break;
            }
        };
        let text = match frame {
            Frame::Message(text) => text,
            Frame::TooLarge { .. } if unauthenticated.is_some() => {
                tracing::warn!(connection = id, "oversized message before authentication; closing");
                let message =
                    "unauthorized: the first message must be `authenticate` with the token from the server file";
                let _ = ctx.outgoing.send(error_reply("null", code::UNAUTHORIZED, message).into()).await;
                break;
            }
            Frame::TooLarge { len, limit } => {
                let message = match len {
                    Some(len) => {
                        format!("invalid request: a message of {len} bytes is over the limit of {limit} bytes")
                    }
                    None => format!("invalid request: a message is over the limit of {limit} bytes"),
                };
                let _ = ctx.outgoing.send(error_reply("null", code::INVALID_REQUEST, &message).into()).await;
                continue;
            }
        };
        if let Some(token) = &unauthenticated {
            // Nothing runs before the peer has shown the token.
            let (reply, ok) = authenticate(&text, token);
            let _ = ctx.outgoing.send(reply.into()).await;
            if !ok {
                tracing::warn!(connection = id, transport = peer.transport, "authentication failed; closing");
                break;
            }
            unauthenticated = None;
            frames.decoder_mut().set_max(max_frame);
            continue;
        }
        // Standard input is delivered here, in order, not in a task of its own.
        if mentions_stdin(&text) && deliver_stdin(&ctx, &text, frames.get_ref()).await {
            continue;
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let (ctx, methods) = (Arc::clone(&ctx), methods.clone());
        state.lifecycle.tasks.spawn(async move {
            if let Some(reply) = dispatch::handle_message(&methods, &ctx, &text).await {
                let _ = ctx.outgoing.send(reply.into()).await;
            }
            drop(permit);
        });
    }
    // The peer sends no more. Its requests go on (it may have only half-closed, waiting for the
    // replies) unless it has hung up entirely, which ends them.
    if peer.eof_ends_session {
        ctx.hang_up();
    }
    while in_flight.available_permits() < MAX_IN_FLIGHT {
        if frames.get_ref().peer_hung_up() {
            tracing::debug!(connection = id, "peer hung up; cancelling its requests");
            ctx.hang_up();
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(HANGUP_CHECK) => {}
            () = state.lifecycle.close_connections.cancelled() => break,
        }
    }
    drop(busy);
    tracing::debug!(connection = id, "closed");
}

/// A cheap first test: could this message be a `mcli/stdin` notification?
/// Checks a first message: it must be the request `authenticate {token}` with the server's
/// token (compared in constant time). Returns the reply and whether it passed.
fn authenticate(text: &[u8], token: &str) -> (Vec<u8>, bool) {
    use subtle::ConstantTimeEq as _;
    #[derive(serde::Deserialize)]
    struct Auth {
        method: String,
        params: Option<AuthParams>,
    }
    #[derive(serde::Deserialize)]
    struct AuthParams {
        token: String,
    }
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
    }
    // The id is read on its own, so that even a refused message gets its reply matched.
    let raw_id =
        serde_json::from_slice::<IdOnly<'_>>(text).ok().and_then(|m| m.id).map_or("null", |id| id.get()).to_owned();
    let auth = serde_json::from_slice::<Auth>(text).ok();
    let given = auth.filter(|a| a.method == AUTHENTICATE_METHOD).and_then(|a| a.params).map(|p| p.token);
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            (format!(r#"{{"jsonrpc":"2.0","id":{raw_id},"result":{{"ok":true}}}}"#).into_bytes(), true)
        }
        _ => (
            error_reply(
                &raw_id,
                code::UNAUTHORIZED,
                "unauthorized: the first message must be `authenticate` with the token from the server file",
            ),
            false,
        ),
    }
}

fn mentions_stdin(text: &[u8]) -> bool {
    memchr::memmem::find(text, STDIN_NOTIFICATION.as_bytes()).is_some()
}

/// Hands a `mcli/stdin` chunk to its request, waiting while the command's input queue is full,
/// but not past the peer hanging up or the connection being cancelled. False when the message
/// is not a `mcli/stdin` notification after all, for the usual dispatch.
async fn deliver_stdin<R: Hangup>(ctx: &ConnectionCtx, text: &[u8], peer: &R) -> bool {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
        #[serde(default, borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        params: serde_json::Value,
    }
    let message = match serde_json::from_slice::<Message<'_>>(text) {
        Ok(message) if message.method == STDIN_NOTIFICATION && message.id.is_none() => message.params,
        _ => return false,
    };
    let message: StdinParams = match serde_json::from_value(message) {
        Ok(params) => params,
        Err(err) => {
            tracing::debug!(connection = ctx.id, %err, "ignored a malformed mcli/stdin notification");
            return true;
        }
    };
    let key = message.request_id.to_string();
    let bytes = match message.bytes() {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::debug!(connection = ctx.id, %err, "ignored mcli/stdin with bad base64");
            return true;
        }
    };
    if !bytes.is_empty()
        && let Some(tx) = ctx.stdin.sender(&key)
    {
        let send = tx.send(Bytes::from(bytes));
        tokio::pin!(send);
        let hung_up = ctx.hang_up_token();
        loop {
            tokio::select! {
                _ = &mut send => break,
                () = hung_up.cancelled() => break,
                () = tokio::time::sleep(HANGUP_CHECK) => {
                    if peer.peer_hung_up() {
                        ctx.hang_up();
                        break;
                    }
                }
            }
        }
    }
    if message.eof {
        ctx.stdin.close(&key);
    }
    true
}

/// Writes queued messages in order, coalescing what is ready into one write. A failed write means
/// the peer is gone: its requests are cancelled.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Bytes>,
    framing: Framing,
    cancel: CancellationToken,
) {
    let mut buf = Vec::with_capacity(8 * 1024);
    while let Some(message) = rx.recv().await {
        buf.clear();
        encode_frame(framing, &message, &mut buf);
        while buf.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(message) => encode_frame(framing, &message, &mut buf),
                Err(_) => break,
            }
        }
        if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
            cancel.cancel();
            return;
        }
    }
    let _ = writer.shutdown().await;
}
