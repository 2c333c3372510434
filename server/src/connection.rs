//! One client connection on a stream transport: reads framed messages, runs each in its own
//! task, and writes replies and notifications through one ordered, bounded queue. A connection's
//! failure ends that connection only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use jsonrpsee::Methods;
use mcli_shared::framing::{Frame, FrameCodec, Framing, encode_frame};
use mcli_shared::protocol::code;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{self, error_reply};
use crate::state::State;

/// Requests one connection may have in flight; reading pauses beyond it.
const MAX_IN_FLIGHT: usize = 64;
/// Messages queued for writing; producers (streamed output) wait beyond it.
const OUTGOING_QUEUE: usize = 64;
/// How many queued messages the writer coalesces into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// What the request handlers of one connection share.
pub struct ConnectionCtx {
    pub id: usize,
    pub outgoing: mpsc::Sender<Bytes>,
    pub stream_by_default: bool,
    /// Cancelled when the connection fails or the server aborts; parent of every request's token.
    cancel: CancellationToken,
    /// Cancellation tokens of the requests in flight, by id (as JSON text).
    requests: Mutex<HashMap<String, CancellationToken>>,
}

impl ConnectionCtx {
    fn requests(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register_request(&self, key: &str) -> CancellationToken {
        let token = self.cancel.child_token();
        self.requests().insert(key.to_owned(), token.clone());
        token
    }

    pub fn unregister_request(&self, key: &str) {
        self.requests().remove(key);
    }

    pub fn cancel_request(&self, key: &str) {
        if let Some(token) = self.requests().get(key) {
            token.cancel();
        }
    }
}

/// Serves one connection until the peer closes it, its framing breaks, or the server closes
/// connections at the end of shutdown.
pub async fn serve<R, W>(
    state: State,
    methods: Methods,
    id: usize,
    reader: R,
    writer: W,
    max_frame: usize,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(OUTGOING_QUEUE);
    let ctx = Arc::new(ConnectionCtx {
        id,
        outgoing: tx,
        stream_by_default: true,
        cancel: state.abort.child_token(),
        requests: Mutex::new(HashMap::new()),
    });
    let mut frames = FramedRead::new(reader, FrameCodec::detect(max_frame));
    let mut pending = Some((writer, rx));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tracing::debug!(connection = id, "connected");

    loop {
        let next = tokio::select! {
            next = frames.next() => next,
            () = state.close_connections.cancelled() => break,
        };
        // The writer starts with the first message, once the framing is known.
        if let Some((writer, rx)) = pending.take() {
            let framing = frames.decoder().framing().unwrap_or(Framing::Lines);
            state
                .tasks
                .spawn(write_loop(writer, rx, framing, ctx.cancel.clone()));
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
            Frame::TooLarge { len, limit } => {
                let size = len.map_or_else(|| "more than".to_owned(), |n| format!("{n} bytes,"));
                let message =
                    format!("invalid request: message of {size} over the limit of {limit} bytes");
                let _ = ctx
                    .outgoing
                    .send(error_reply("null", code::INVALID_REQUEST, &message).into())
                    .await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let (ctx, methods) = (Arc::clone(&ctx), methods.clone());
        state.tasks.spawn(async move {
            if let Some(reply) = dispatch::handle_message(&methods, &ctx, &text).await {
                let _ = ctx.outgoing.send(reply.into()).await;
            }
            drop(permit);
        });
    }
    tracing::debug!(connection = id, "closed");
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
