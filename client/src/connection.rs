//! A blocking JSON-RPC connection to a running server over its local socket. No async runtime:
//! the client's warm path is connect, one write, reads until the response, exit.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use mcli_shared::framing::{DEFAULT_MAX_FRAME, Frame, FrameCodec, Framing};
use mcli_shared::protocol::{
    ErrorObject, Execute, ExecuteParams, ExecuteResult, Incoming, Method, OUTPUT_NOTIFICATION,
    OutputParams, Request,
};
use serde::Serialize;
use tokio_util::codec::Decoder;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens: no socket file, or a stale one left by a dead server.
    #[error("no server is listening on {path}")]
    NoServer { path: String },
    #[error("cannot connect to {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the server answered with an error: {} (code {})", .0.message, .0.code)]
    Rpc(ErrorObject),
    #[error("the server closed the connection before answering")]
    Closed,
    #[error("the server did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("cannot talk to the server: {0}")]
    Io(#[from] io::Error),
    #[error("the server sent something this client does not understand: {0}")]
    BadReply(String),
}

pub struct Connection {
    stream: UnixStream,
    codec: FrameCodec,
    buf: BytesMut,
    next_id: u64,
}

impl Connection {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ConnectError> {
        match UnixStream::connect(path) {
            Ok(stream) => Ok(Connection {
                stream,
                codec: FrameCodec::with_framing(Framing::Lines, DEFAULT_MAX_FRAME),
                buf: BytesMut::with_capacity(8 * 1024),
                next_id: 1,
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ConnectError::NoServer {
                    path: path.display().to_string(),
                })
            }
            Err(source) => Err(ConnectError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Limits how long a read may wait; `None` waits for ever (a command may be silent a long
    /// time).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// Calls `M` and waits for its result, skipping notifications.
    pub fn call<M: Method>(&mut self, params: &M::Params) -> Result<M::Result, CallError> {
        let id = self.send(M::NAME, params)?;
        self.wait_result::<M::Result>(id, |_| Ok(()))
    }

    /// Runs a command, handing each piece of streamed output to `on_output` as it arrives.
    pub fn execute(
        &mut self,
        params: &ExecuteParams,
        mut on_output: impl FnMut(&OutputParams) -> io::Result<()>,
    ) -> Result<ExecuteResult, CallError> {
        let id = self.send(Execute::NAME, params)?;
        self.wait_result::<ExecuteResult>(id, |incoming| {
            if incoming.method.as_deref() == Some(OUTPUT_NOTIFICATION) {
                let params = incoming.params.as_ref().map_or("null", |p| p.get());
                let output: OutputParams = serde_json::from_str(params)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                on_output(&output)?;
            }
            Ok(())
        })
    }

    fn send<P: Serialize>(&mut self, method: &str, params: &P) -> Result<u64, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Request::new(id, method, params))
            .map_err(|e| CallError::BadReply(format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        self.stream.write_all(&line)?;
        Ok(id)
    }

    fn wait_result<T: serde::de::DeserializeOwned>(
        &mut self,
        id: u64,
        mut on_notification: impl FnMut(&Incoming) -> io::Result<()>,
    ) -> Result<T, CallError> {
        loop {
            let incoming = self.recv()?;
            match &incoming.id {
                Some(got) if got.as_u64() == Some(id) => {
                    if let Some(error) = incoming.error {
                        return Err(CallError::Rpc(error));
                    }
                    let result = incoming.result.as_ref().map_or("null", |r| r.get());
                    return serde_json::from_str(result)
                        .map_err(|e| CallError::BadReply(e.to_string()));
                }
                Some(serde_json::Value::Null) => {
                    // An error the server could not tie to a request (e.g. it is over its
                    // connection limit) concerns this one: it is the only one in flight.
                    if let Some(error) = incoming.error {
                        return Err(CallError::Rpc(error));
                    }
                }
                Some(_) => {}
                None => on_notification(&incoming)?,
            }
        }
    }

    fn recv(&mut self) -> Result<Incoming, CallError> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(Frame::Message(bytes))) => {
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| CallError::BadReply(e.to_string()));
                }
                Ok(Some(Frame::TooLarge { limit, .. })) => {
                    return Err(CallError::BadReply(format!("a message over {limit} bytes")));
                }
                Ok(None) => {}
                Err(e) => return Err(CallError::BadReply(e.to_string())),
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => return Err(CallError::Closed),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let limit = self
                        .stream
                        .read_timeout()
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    return Err(CallError::TimedOut(limit));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CallError::Io(e)),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
