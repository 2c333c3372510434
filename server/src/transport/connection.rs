//! One client connection on a stream transport (socket, TCP, stdio). A [`Connection`] owns the
//! framing of what the peer sends and the writer task of what goes back: replies and
//! notifications leave through one ordered, bounded queue, coalesced into few writes. Each
//! message runs in a task of its own, with a bound on how many requests are in flight (a batch
//! counts as many as it has members). A connection's failure ends that connection only.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use jsonrpsee::Methods;
use mcli_protocol::framing::{DEFAULT_MAX_FRAME, Frame, FrameCodec, FrameError, Framing, encode_frame, frame_parts};
use mcli_protocol::{STDIN_NOTIFICATION, StdinParams, code};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::context::ConnectionCtx;
use super::dispatch::{self, error_reply};
use super::hangup::{HANGUP_CHECK, Hangup};
use super::terminal::Terminal;
use crate::lifecycle::Lifecycle;

/// Requests one connection may have in flight, batch members included; reading pauses beyond it.
const MAX_IN_FLIGHT: usize = 64;
// A batch takes one permit per member, all at once: it must be able to get them.
const _: () = assert!(dispatch::MAX_BATCH <= MAX_IN_FLIGHT);
/// How many queued messages the writer coalesces into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// How long a connection open when the server closes connections is still read, to answer
/// what it sends with [`SHUTTING_DOWN`].
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const SHUTTING_DOWN: &str = "the server is shutting down; try again";

/// A stream connection: the peer's messages in, replies and notifications out.
pub struct Connection<R, W> {
    /// What the requests of this connection share; its outgoing queue feeds the writer.
    ctx: Arc<ConnectionCtx>,
    frames: FramedRead<R, FrameCodec>,
    /// The writer and the receiving end of the outgoing queue, until the first message tells
    /// which framing to answer in.
    unstarted: Option<(W, mpsc::Receiver<Bytes>)>,
    /// One permit per request in flight.
    in_flight: Arc<Semaphore>,
    lifecycle: Arc<Lifecycle>,
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Hangup + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// A connection with peer number `id` on `transport`; nothing is read or written yet.
    pub fn new(lifecycle: &Arc<Lifecycle>, id: usize, transport: &'static str, reader: R, writer: W) -> Self {
        let terminal = Terminal::new(reader.passed_fds());
        let (ctx, outgoing) = ConnectionCtx::with_terminal(lifecycle, id, transport, true, terminal);
        Connection {
            ctx,
            frames: FramedRead::new(reader, FrameCodec::detect(DEFAULT_MAX_FRAME)),
            unstarted: Some((writer, outgoing)),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            lifecycle: Arc::clone(lifecycle),
        }
    }

    pub fn id(&self) -> usize {
        self.ctx.id
    }

    pub fn transport(&self) -> &'static str {
        self.ctx.transport
    }

    /// Holds the peer to messages of at most `max` bytes until [`Connection::lift_frame_limit`].
    pub fn restrict_frames(&mut self, max: usize) {
        self.frames.decoder_mut().set_max(max.min(DEFAULT_MAX_FRAME));
    }

    pub fn lift_frame_limit(&mut self) {
        self.frames.decoder_mut().set_max(DEFAULT_MAX_FRAME);
    }

    /// The peer's next frame, or how its framing broke; `None` once the peer has finished
    /// sending or the server closes connections.
    pub async fn read_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        let next = tokio::select! {
            next = self.frames.next() => next,
            () = self.lifecycle.close_connections.cancelled() => return None,
        };
        self.start_writer();
        next
    }

    /// The peer's next frame; `None` once the peer has finished sending, its framing broke (it
    /// is told so), or the server closes connections.
    pub async fn read(&mut self) -> Option<Frame> {
        match self.read_frame().await? {
            Ok(frame) => Some(frame),
            Err(err) => {
                tracing::debug!(connection = self.id(), %err, "framing broken; closing");
                self.send(error_reply("null", code::PARSE_ERROR, &format!("parse error: {err}"))).await;
                None
            }
        }
    }

    /// Queues a message for the peer, behind those queued before it.
    pub async fn send(&self, message: Vec<u8>) {
        let _ = self.ctx.outgoing.send(message.into()).await;
    }

    /// Starts the writer with the first message, once the framing to answer in is known.
    fn start_writer(&mut self) {
        if let Some((writer, outgoing)) = self.unstarted.take() {
            let framing = self.frames.decoder().framing().unwrap_or(Framing::Lines);
            self.lifecycle.tasks.spawn(write_loop(writer, outgoing, framing, self.ctx.hang_up_token()));
        }
    }

    /// Reads messages until the peer has finished sending, and runs each in a task of its own,
    /// pausing while [`MAX_IN_FLIGHT`] requests are running (a batch waits for a permit per
    /// member).
    pub async fn serve_messages(&mut self, methods: &Methods) {
        while let Some(frame) = self.read().await {
            let text = match frame {
                Frame::Message(text) => text,
                Frame::TooLarge { len, limit } => {
                    self.send(too_large(len, limit)).await;
                    continue;
                }
            };
            // Passed streams go to their request here, in the order the requests came.
            if let Some(key) = passed_request_key(&text) {
                self.ctx.terminal.take_for(key);
            }
            if let Some(overflow) = self.ctx.terminal.overflow() {
                tracing::debug!(connection = self.id(), "{overflow}");
                self.send(error_reply("null", code::INVALID_REQUEST, &format!("invalid request: {overflow}"))).await;
            }
            if self.ctx.terminal.resize_from(&text) {
                continue;
            }
            // Standard input is delivered here, in order, not in a task of its own.
            if mentions_stdin(&text) && self.deliver_stdin(&text).await {
                continue;
            }
            let requests = u32::try_from(dispatch::requests_in(&text)).unwrap_or(1);
            let Ok(permit) = Arc::clone(&self.in_flight).acquire_many_owned(requests).await else {
                break;
            };
            let (ctx, methods) = (Arc::clone(&self.ctx), methods.clone());
            self.lifecycle.tasks.spawn(async move {
                if let Some(reply) = dispatch::handle_message(&methods, &ctx, &text).await {
                    let _ = ctx.outgoing.send(reply.into()).await;
                }
                drop(permit);
            });
        }
    }

    /// Once the server closes connections: answers every request the peer still sends (and
    /// any read but not yet run) with "shutting down", which clients retry on the successor or
    /// a new server, until the peer stops sending or [`LINGER`] has passed. Closing at once
    /// would drop such a request unanswered, and its client could not tell whether it ran.
    pub async fn refuse_while_closing(&mut self) {
        if !self.lifecycle.close_connections.is_cancelled() || self.ctx.transport == "stdio" {
            return;
        }
        let refuse = async {
            while let Some(Ok(frame)) = self.frames.next().await {
                self.start_writer();
                if let Frame::Message(text) = frame
                    && let Some(reply) = dispatch::refusal(&text, code::SHUTTING_DOWN, SHUTTING_DOWN)
                {
                    self.send(reply).await;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, refuse).await;
    }

    /// Waits, once the peer sends no more, for the requests in flight. They go on (the peer may
    /// have only half-closed, waiting for the replies) unless it has hung up entirely, which
    /// ends them; their replies still go out through the writer after this returns.
    pub async fn finish(self) {
        let peer = self.frames.get_ref();
        if peer.end_of_input_is_hang_up() {
            self.ctx.hang_up();
        }
        while self.in_flight.available_permits() < MAX_IN_FLIGHT {
            if peer.peer_hung_up() {
                tracing::debug!(connection = self.id(), "peer hung up; cancelling its requests");
                self.ctx.hang_up();
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(HANGUP_CHECK) => {}
                () = self.lifecycle.close_connections.cancelled() => break,
            }
        }
    }

    /// Hands a `mcli/stdin` chunk to its request, waiting while the command's input queue is
    /// full, but not past the peer hanging up or the connection being cancelled. False when the
    /// message is not a `mcli/stdin` notification after all, for the usual dispatch.
    async fn deliver_stdin(&self, text: &[u8]) -> bool {
        let Some(params) = stdin_params(text) else {
            return false;
        };
        let ctx = &self.ctx;
        let params = match params {
            Ok(params) => params,
            Err(err) => {
                tracing::debug!(connection = ctx.id, %err, "ignored a malformed mcli/stdin notification");
                return true;
            }
        };
        let key = params.request_id.to_string();
        let bytes = match params.bytes() {
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
                        if self.frames.get_ref().peer_hung_up() {
                            ctx.hang_up();
                            break;
                        }
                    }
                }
            }
        }
        if params.eof {
            ctx.stdin.close(&key);
        }
        true
    }
}

/// The reply to a message over the size limit; the connection goes on.
fn too_large(len: Option<usize>, limit: usize) -> Vec<u8> {
    let message = match len {
        Some(len) => format!("invalid request: a message of {len} bytes is over the limit of {limit} bytes"),
        None => format!("invalid request: a message is over the limit of {limit} bytes"),
    };
    error_reply("null", code::INVALID_REQUEST, &message)
}

/// The id (as the connection's key: its JSON text) of an `execute` request with
/// `streams: "passed"`.
fn passed_request_key(text: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        method: Option<std::borrow::Cow<'a, str>>,
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        streams: Option<mcli_protocol::Streams>,
    }
    use mcli_protocol::Method as _;
    // A cheap test first: most messages are not such requests.
    memchr::memmem::find(text, b"passed")?;
    let message: Message<'_> = serde_json::from_slice(text).ok()?;
    let asks = message.method.as_deref() == Some(mcli_protocol::Execute::NAME)
        && message.params.and_then(|p| p.streams) == Some(mcli_protocol::Streams::Passed);
    if !asks {
        return None;
    }
    Some(dispatch::id_key(message.id?))
}

/// A cheap first test: could this message be a `mcli/stdin` notification?
fn mentions_stdin(text: &[u8]) -> bool {
    memchr::memmem::find(text, STDIN_NOTIFICATION.as_bytes()).is_some()
}

/// The params of a `mcli/stdin` notification (`Err` when they are malformed); `None` when the
/// message is something else.
fn stdin_params(text: &[u8]) -> Option<Result<StdinParams, serde_json::Error>> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
        #[serde(default, borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        params: serde_json::Value,
    }
    match serde_json::from_slice::<Message<'_>>(text) {
        Ok(message) if message.method == STDIN_NOTIFICATION && message.id.is_none() => {
            Some(serde_json::from_value(message.params))
        }
        _ => None,
    }
}

/// Writes queued messages in order, coalescing what is ready into one write. A message of
/// [`WRITE_BATCH_BYTES`] or more is written as it is, not copied: the buffer stays small, and a
/// large reply is not held twice. A failed write means the peer is gone: its requests are
/// cancelled.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Bytes>,
    framing: Framing,
    cancel: CancellationToken,
) {
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut next = rx.recv().await;
    while let Some(message) = next.take() {
        buf.clear();
        let written = if message.len() >= WRITE_BATCH_BYTES {
            write_large(&mut writer, framing, &message).await
        } else {
            encode_frame(framing, &message, &mut buf);
            while buf.len() < WRITE_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(large) if large.len() >= WRITE_BATCH_BYTES => {
                        next = Some(large);
                        break;
                    }
                    Ok(message) => encode_frame(framing, &message, &mut buf),
                    Err(_) => break,
                }
            }
            writer.write_all(&buf).await
        };
        if written.is_err() || writer.flush().await.is_err() {
            cancel.cancel();
            return;
        }
        if next.is_none() {
            next = rx.recv().await;
        }
    }
    let _ = writer.shutdown().await;
}

/// Writes one message framed as `framing`: what goes before it, the message, what goes after.
async fn write_large<W: AsyncWrite + Unpin>(writer: &mut W, framing: Framing, message: &[u8]) -> std::io::Result<()> {
    let (before, after) = frame_parts(framing, message.len());
    writer.write_all(&before).await?;
    writer.write_all(message).await?;
    writer.write_all(after).await
}
