//! A blocking JSON-RPC connection to a running server over its local socket. No async runtime:
//! the client's warm path is connect, one write, reads until the response, exit.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use mcli_protocol::framing::{DEFAULT_MAX_FRAME, Frame, FrameCodec, FrameError, Framing, encode_frame};
use mcli_protocol::{
    AUTHENTICATE_METHOD, CANCEL_REQUEST_NOTIFICATION, ErrorObject, Execute, ExecuteParams, ExecuteResult, Incoming,
    Method, OUTPUT_NOTIFICATION, OutputParams, QUEUED_NOTIFICATION, RESIZE_NOTIFICATION, Request, ResizeParams,
    ServerFile, Signal, SignalParams, code,
};
use mcli_shared::paths::{self, ServerPaths};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;
use tokio_util::codec::Decoder;

use crate::forward::Forwarder;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens: no socket file, or a stale one left by a dead server.
    #[error("no server is listening on {path}")]
    NoServer {
        /// Where: the socket's path, or `TCP ADDR`.
        path: String,
    },
    /// Connecting failed for another reason (permissions, an address that does not resolve).
    #[error("cannot connect to {path}: {source}")]
    Io {
        /// Where: the socket's path, or `TCP ADDR`.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Authenticating over TCP failed: a wrong token, or no answer within 10 seconds.
    #[error("the server refused this client: {0}")]
    Auth(#[source] CallError),
    /// What listens on the socket is not this user's server (see [`Connection::connect_server`]).
    #[error("refusing the server on {path}: {reason}")]
    NotTheServer {
        /// The socket's path.
        path: String,
        /// What listens there instead, and what to do about it.
        reason: String,
    },
    /// The server serves as many connections as it may; its message says so.
    #[error("{0}")]
    Busy(String),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered the call with a JSON-RPC error.
    #[error("the server answered with an error: {} (code {})", .0.message, .0.code)]
    Rpc(ErrorObject),
    /// The server closed the connection before the reply came.
    #[error("the server closed the connection before answering")]
    Closed,
    /// No reply came within the read timeout (see [`Connection::set_read_timeout`]), which it
    /// carries.
    #[error("the server did not answer within {0:?}")]
    TimedOut(Duration),
    /// Reading from or writing to the connection failed.
    #[error("cannot talk to the server: {0}")]
    Io(#[from] io::Error),
    /// What the server sent is not a valid message of the protocol.
    #[error("the server sent something this client does not understand: {0}")]
    BadReply(#[source] BadReply),
    /// A request that cannot be put in JSON (it cannot happen with the protocol's own types).
    #[error("the server sent something this client does not understand: cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// Writing the command's output here failed (e.g. standard output was closed).
    #[error("cannot write the output: {0}")]
    Output(io::Error),
    /// A SIGINT arrived (handled inside the call: it cancels).
    #[error("interrupted")]
    Interrupt,
    /// A second SIGINT arrived: the call was given up.
    #[error("interrupted twice; gave up waiting for the command to end")]
    Interrupted,
}

/// What is wrong with what the server sent.
#[derive(Debug, thiserror::Error)]
pub enum BadReply {
    /// A message that is not the JSON expected.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A message larger than the connection accepts.
    #[error("a message over {limit} bytes")]
    TooLarge {
        /// The largest message accepted, in bytes.
        limit: usize,
    },
    /// Bytes that do not follow the connection's framing.
    #[error(transparent)]
    Framing(#[from] FrameError),
}

/// Bytes of the server were already read into the connection's buffer, so the raw stream
/// would miss them.
#[derive(Debug, thiserror::Error)]
#[error("the server sent more than was asked for")]
pub struct ReadAhead;

/// A blocking connection to a server: requests go out and replies are read on the calling
/// thread, one call at a time; other threads send notifications through a [`Notifier`].
pub struct Connection {
    stream: Stream,
    /// Writes go through this lock, shared with [`Notifier`]s on other threads, so that
    /// messages never interleave.
    writer: Arc<Mutex<Stream>>,
    codec: FrameCodec,
    /// How requests are framed (replies come back the same way).
    framing: Framing,
    buf: BytesMut,
    next_id: u64,
    /// A pipe that becomes readable when SIGINT arrives, while waiting for a reply.
    interrupts: Option<OwnedFd>,
    /// Set while standard input is still being forwarded.
    input_pending: Arc<AtomicBool>,
    /// Whether the server has sent anything, or a cancel has been sent: then a failed call may
    /// have started on the server and must not be sent again.
    engaged: bool,
    /// Told, with the number of calls ahead, when an `execute` waits for a free slot.
    on_queued: Option<Box<dyn FnMut(u64) + Send>>,
    /// The terminal's signals being forwarded, and the `execute` request they go to.
    forwarding: Option<(Forwarder, u64)>,
    /// Whether the command runs on a terminal on the server (`--tty`): window changes then go
    /// as `mcli/resize`.
    remote_tty: bool,
    /// The release the server file names, read when connecting by name (for the release check).
    server_release: Option<String>,
}

/// Sends notifications on a connection from any thread.
#[derive(Clone)]
pub struct Notifier {
    writer: Arc<Mutex<Stream>>,
}

impl Notifier {
    /// Sends a notification (a message without reply), waiting until the connection is free.
    pub fn notify<P: Serialize>(&self, method: &str, params: &P) -> io::Result<()> {
        let line = notification_line(method, params)?;
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).write_all(&line)
    }

    /// Sends a notification only if that can be done at once: the connection is not in use by
    /// another thread and the socket has room for the whole message. Safe from a thread that
    /// must not block.
    pub fn try_notify<P: Serialize>(&self, method: &str, params: &P) -> io::Result<()> {
        use nix::sys::socket::{MsgFlags, send};
        let line = notification_line(method, params)?;
        let writer = match self.writer.try_lock() {
            Ok(writer) => writer,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(io::ErrorKind::WouldBlock.into()),
        };
        match send(writer.as_fd().as_raw_fd(), &line, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
            Ok(n) if n == line.len() => Ok(()),
            // A partial message has broken the stream: the connection must not be used again.
            Ok(_) => Err(io::ErrorKind::WriteZero.into()),
            Err(errno) => Err(errno.into()),
        }
    }
}

fn notification_line<P: Serialize>(method: &str, params: &P) -> io::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Notification<'a, P> {
        jsonrpc: &'static str,
        method: &'a str,
        params: &'a P,
    }
    let mut line = serde_json::to_vec(&Notification { jsonrpc: "2.0", method, params })?;
    line.push(b'\n');
    Ok(line)
}

/// The byte stream under a connection: the local socket, or TCP.
pub enum Stream {
    /// A server's local socket.
    Unix(UnixStream),
    /// A server's TCP address (see [`Connection::connect_tcp`]).
    Tcp(TcpStream),
}

impl Stream {
    /// Shuts the sending side: the peer reads end of file, and can still answer.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    /// A second handle on the same stream (one to read, one to write).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        match self {
            Stream::Unix(s) => s.read_timeout(),
            Stream::Tcp(s) => s.read_timeout(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl Connection {
    /// Connects to the socket of the server `server` names, and checks that what answers is that
    /// server: a process of this user (as [`Connection::connect`] checks) and, when the server
    /// file names a pid, the process of that pid. A server writes its file before it binds its
    /// socket, so a live server's file always names it; a missing or unreadable file leaves only
    /// the user check (the server puts its file back within a second).
    pub fn connect_server(server: &ServerPaths) -> Result<Self, ConnectError> {
        match Self::connect_named(server)? {
            Ok(conn) => Ok(conn),
            // The server may have been replaced between the connect and the read of its file
            // (a restart): look once more before calling it an impostor.
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                Self::connect_named(server)?
                    .map_err(|reason| ConnectError::NotTheServer { path: server.socket.display().to_string(), reason })
            }
        }
    }

    /// Connects and compares the peer's pid with the server file's: the inner `Err` says why
    /// they differ.
    fn connect_named(server: &ServerPaths) -> Result<Result<Self, String>, ConnectError> {
        let (mut conn, peer_pid) = Self::connect_checked(&server.socket)?;
        let named = paths::read_server_file(&server.server_file).ok().and_then(|t| ServerFile::parse(&t).ok());
        // A pid of 0 is a peer in another pid namespace, whose pid this one cannot see; a peer
        // in a namespace below this one has another pid there than the one it wrote.
        if let Some(file) = &named
            && peer_pid != 0
            && !file.is_listener(peer_pid)
            && same_pid_namespace(peer_pid)
        {
            let socket = server.socket.display();
            return Ok(Err(format!(
                "the process listening there (pid {peer_pid}) is not the server that owns the name (pid {} in {}); remove the socket (`rm {socket}`) so that a server can take its place",
                file.pid,
                server.server_file.display()
            )));
        }
        conn.server_release = named.map(|file| file.version);
        Ok(Ok(conn))
    }

    /// The release of the server, as its server file named it when this connection was made
    /// by name ([`Connection::connect_server`]).
    pub fn server_release(&self) -> Option<&str> {
        self.server_release.as_deref()
    }

    /// Connects to the socket at `path`, checking that the process listening there runs as
    /// this user: a socket someone else put in the runtime dir would otherwise be trusted with
    /// the command, its arguments, environment and input.
    pub fn connect(path: &Path) -> Result<Self, ConnectError> {
        Self::connect_checked(path).map(|(conn, _)| conn)
    }

    /// [`Connection::connect`], also returning the listening process's pid (0 when unknown).
    fn connect_checked(path: &Path) -> Result<(Self, u32), ConnectError> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let place = || path.display().to_string();
        let stream = match UnixStream::connect(path) {
            Ok(stream) => stream,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
                return Err(ConnectError::NoServer { path: place() });
            }
            Err(source) => return Err(ConnectError::Io { path: place(), source }),
        };
        let peer =
            getsockopt(&stream, PeerCredentials).map_err(|e| ConnectError::Io { path: place(), source: e.into() })?;
        let me = nix::unistd::geteuid().as_raw();
        if peer.uid() != me {
            let reason = format!(
                "the process listening there (pid {}) runs as uid {}, not as you (uid {me}), so it is not your mcli-server; remove the socket (`rm {}`) and find out who put it there",
                peer.pid(),
                peer.uid(),
                place()
            );
            return Err(ConnectError::NotTheServer { path: place(), reason });
        }
        let conn = Self::over(Stream::Unix(stream), Framing::Lines)
            .map_err(|source| ConnectError::Io { path: place(), source })?;
        Ok((conn, u32::try_from(peer.pid()).unwrap_or(0)))
    }

    /// Connects to a server's TCP address and authenticates with its token, in `framing` (the
    /// first message fixes a connection's framing for good).
    pub fn connect_tcp(addr: &str, token: &str, framing: Framing) -> Result<Self, ConnectError> {
        use std::net::ToSocketAddrs as _;
        let place = || format!("TCP {addr}");
        let target = addr
            .to_socket_addrs()
            .map_err(|source| ConnectError::Io { path: place(), source })?
            .next()
            .ok_or_else(|| ConnectError::Io { path: place(), source: io::ErrorKind::NotFound.into() })?;
        let stream = match TcpStream::connect_timeout(&target, Duration::from_secs(10)) {
            Ok(stream) => stream,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(ConnectError::NoServer { path: place() });
            }
            Err(source) => return Err(ConnectError::Io { path: place(), source }),
        };
        let _ = stream.set_nodelay(true);
        let mut conn =
            Self::over(Stream::Tcp(stream), framing).map_err(|source| ConnectError::Io { path: place(), source })?;
        #[derive(Serialize)]
        struct Auth<'a> {
            token: &'a str,
        }
        #[derive(serde::Deserialize)]
        struct Ok {}
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|source| ConnectError::Io { path: place(), source })?;
        let id = conn.send(AUTHENTICATE_METHOD, &Auth { token }).map_err(ConnectError::Auth)?;
        // A server at its connection limit answers the first message with -32002 and closes.
        conn.wait_result::<Ok>(id, |_| Ok(())).map_err(|err| match err {
            CallError::Rpc(busy) if busy.code == code::SERVER_BUSY => ConnectError::Busy(busy.message),
            other => ConnectError::Auth(other),
        })?;
        conn.set_read_timeout(None).map_err(|source| ConnectError::Io { path: place(), source })?;
        Ok(conn)
    }

    /// The raw stream, for a bridge that passes bytes through. Fails if bytes were read ahead.
    pub fn into_stream(self) -> Result<Stream, ReadAhead> {
        if !self.buf.is_empty() {
            return Err(ReadAhead);
        }
        Ok(self.stream)
    }

    fn over(stream: Stream, framing: Framing) -> io::Result<Self> {
        let writer = stream.try_clone()?;
        Ok(Connection {
            stream,
            writer: Arc::new(Mutex::new(writer)),
            codec: FrameCodec::with_framing(framing, DEFAULT_MAX_FRAME),
            framing,
            buf: BytesMut::with_capacity(8 * 1024),
            next_id: 1,
            interrupts: None,
            input_pending: Arc::new(AtomicBool::new(false)),
            engaged: false,
            on_queued: None,
            forwarding: None,
            remote_tty: false,
            server_release: None,
        })
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

    /// Marks standard input as being forwarded; the forwarder clears the returned flag when done.
    /// While it is set, a first SIGINT leaves at once instead of asking the server to cancel: the
    /// request could sit behind input the command does not read, and hanging up cancels too.
    pub fn input_pending(&self) -> Arc<AtomicBool> {
        self.input_pending.store(true, AtomicOrdering::SeqCst);
        Arc::clone(&self.input_pending)
    }

    /// A handle to send notifications from other threads.
    pub fn notifier(&self) -> Notifier {
        Notifier { writer: Arc::clone(&self.writer) }
    }

    /// Watches for SIGINT while waiting for replies: a first one sends `$/cancelRequest` for the
    /// request being waited for, a second one ends the wait with [`CallError::Interrupted`].
    pub fn cancel_on_interrupt(&mut self) -> io::Result<()> {
        // A socket pair, not a pipe: signal-hook writes to sockets without ever blocking.
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, write)?;
        self.interrupts = Some(OwnedFd::from(read));
        Ok(())
    }

    /// Sends a request of method `M`; its reply is read with a `wait_` method (an `attach`
    /// answers as an `execute` does: [`Connection::wait_execute`]).
    pub fn send_request<M: Method>(&mut self, params: &M::Params) -> Result<u64, CallError> {
        self.send(M::NAME, params)
    }

    /// Sends an `execute` request; the reply is read with [`Connection::wait_execute`].
    pub fn send_execute(&mut self, params: &ExecuteParams) -> Result<u64, CallError> {
        self.send(Execute::NAME, params)
    }

    /// Forwards the terminal's signals (see [`crate::forward`]) to the command of `execute`
    /// request `id` while its result is awaited; with `remote_tty` (`--tty`), window changes go
    /// as `mcli/resize` and SIGTERM is forwarded too (the client then ends with the command, and
    /// its terminal is restored).
    pub fn forward_signals(&mut self, id: u64, remote_tty: bool) -> io::Result<()> {
        self.forwarding = Some((Forwarder::install(remote_tty)?, id));
        self.remote_tty = remote_tty;
        Ok(())
    }

    /// Sends an `execute` request with `fds` attached to its bytes (`SCM_RIGHTS`): with
    /// `streams: "passed"`, this process's stdin, stdout and stderr. The local socket only. The
    /// terminal's signals are forwarded to the command (see [`crate::forward`]) from before the
    /// request leaves, so that none can stop or end this client alone once the command may run.
    pub fn send_execute_passing(&mut self, params: &ExecuteParams, fds: &[BorrowedFd<'_>]) -> Result<u64, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        self.forward_signals(id, false)?;
        let payload = serde_json::to_vec(&Request::new(id, Execute::NAME, params)).map_err(CallError::Encode)?;
        let mut frame = Vec::with_capacity(payload.len() + 32);
        encode_frame(self.framing, &payload, &mut frame);
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let sent = send_with_fds(writer.as_fd(), &frame, fds)?;
        writer.write_all(&frame[sent..])?;
        Ok(id)
    }

    /// Runs a command, handing each piece of streamed output to `on_output` as it arrives.
    pub fn execute(
        &mut self,
        params: &ExecuteParams,
        on_output: impl FnMut(&OutputParams) -> io::Result<()>,
    ) -> Result<ExecuteResult, CallError> {
        let id = self.send_execute(params)?;
        self.wait_execute(id, on_output)
    }

    /// Calls `notice` with the number of calls ahead whenever an `execute` on this connection
    /// has to wait for a free slot on the server (`mcli/queued`).
    pub fn on_queued(&mut self, notice: impl FnMut(u64) + Send + 'static) {
        self.on_queued = Some(Box::new(notice));
    }

    /// Waits for the result of the `execute` request `id`, handing it streamed output.
    pub fn wait_execute(
        &mut self,
        id: u64,
        mut on_output: impl FnMut(&OutputParams) -> io::Result<()>,
    ) -> Result<ExecuteResult, CallError> {
        let mut on_queued = self.on_queued.take();
        let result = self.wait_result::<ExecuteResult>(id, |incoming| {
            let params = incoming.params.as_ref().map_or("null", |p| p.get());
            match incoming.method.as_deref() {
                Some(OUTPUT_NOTIFICATION) => {
                    let output: OutputParams =
                        serde_json::from_str(params).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    on_output(&output)?;
                }
                Some(QUEUED_NOTIFICATION) => {
                    if let Some(notice) = on_queued.as_mut() {
                        let ahead =
                            serde_json::from_str::<serde_json::Value>(params).ok().and_then(|p| p["ahead"].as_u64());
                        notice(ahead.unwrap_or(0));
                    }
                }
                _ => {}
            }
            Ok(())
        });
        self.on_queued = on_queued;
        result
    }

    /// Whether a call that failed on this connection certainly did not reach a server that
    /// runs it: nothing came back and no cancel went out (a server that closes with the
    /// request unread resets the connection).
    pub fn may_resend(&self) -> bool {
        !self.engaged
    }

    fn send<P: Serialize>(&mut self, method: &str, params: &P) -> Result<u64, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let payload = serde_json::to_vec(&Request::new(id, method, params)).map_err(CallError::Encode)?;
        let mut frame = Vec::with_capacity(payload.len() + 32);
        encode_frame(self.framing, &payload, &mut frame);
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).write_all(&frame)?;
        Ok(id)
    }

    fn wait_result<T: serde::de::DeserializeOwned>(
        &mut self,
        id: u64,
        mut on_notification: impl FnMut(&Incoming) -> io::Result<()>,
    ) -> Result<T, CallError> {
        let mut interrupted = false;
        loop {
            let incoming = match self.recv() {
                Err(CallError::Interrupt) if !interrupted => {
                    interrupted = true;
                    self.engaged = true;
                    let cancel = serde_json::json!({ "id": id });
                    if self.input_pending.load(AtomicOrdering::SeqCst)
                        || self.notifier().try_notify(CANCEL_REQUEST_NOTIFICATION, &cancel).is_err()
                    {
                        // The connection is busy (input for a command that does not read it):
                        // leave now; the server cancels the command when the connection closes.
                        return Err(CallError::Interrupted);
                    }
                    continue;
                }
                Err(CallError::Interrupt) => return Err(CallError::Interrupted),
                other => other?,
            };
            match &incoming.id {
                Some(got) if got.as_u64() == Some(id) => {
                    if let Some(error) = incoming.error {
                        return Err(CallError::Rpc(error));
                    }
                    let result = incoming.result.as_ref().map_or("null", |r| r.get());
                    return serde_json::from_str(result).map_err(|e| CallError::BadReply(e.into()));
                }
                Some(serde_json::Value::Null) => {
                    // An error the server could not tie to a request (e.g. it is over its
                    // connection limit) concerns this one: it is the only one in flight.
                    if let Some(error) = incoming.error {
                        return Err(CallError::Rpc(error));
                    }
                }
                Some(_) => {}
                None => on_notification(&incoming).map_err(CallError::Output)?,
            }
        }
    }

    fn recv(&mut self) -> Result<Incoming, CallError> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(Frame::Message(bytes))) => {
                    self.engaged = true;
                    return serde_json::from_slice(&bytes).map_err(|e| CallError::BadReply(e.into()));
                }
                Ok(Some(Frame::TooLarge { limit, .. })) => {
                    return Err(CallError::BadReply(BadReply::TooLarge { limit }));
                }
                Ok(None) => {}
                Err(e) => return Err(CallError::BadReply(e.into())),
            }
            if self.interrupts.is_some() || self.forwarding.is_some() {
                match self.wait_readable() {
                    Ok(()) => {}
                    Err(CallError::Io(e)) if e.raw_os_error() == Some(nix::libc::EINTR) => continue,
                    Err(err) => return Err(err),
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => return Err(CallError::Closed),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    let limit = self.stream.read_timeout().ok().flatten().unwrap_or_default();
                    return Err(CallError::TimedOut(limit));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CallError::Io(e)),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Connection {
    /// Waits until the server sends something, or fails with [`CallError::Interrupt`] on SIGINT;
    /// a forwarded signal that arrives meanwhile is sent on to the command.
    fn wait_readable(&mut self) -> Result<(), CallError> {
        loop {
            let fired = {
                let mut fds = vec![PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
                fds.extend(self.interrupts.as_ref().map(|pipe| PollFd::new(pipe.as_fd(), PollFlags::POLLIN)));
                let first_forwarded = fds.len();
                if let Some((forwarder, _)) = &self.forwarding {
                    fds.extend(forwarder.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
                }
                poll(&mut fds, PollTimeout::NONE).map_err(|e| CallError::Io(e.into()))?;
                let ready = |i: usize| fds[i].revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
                if self.interrupts.is_some() && ready(1) {
                    if let Some(pipe) = &self.interrupts {
                        let mut drain = [0u8; 16];
                        let _ = nix::unistd::read(pipe, &mut drain);
                    }
                    return Err(CallError::Interrupt);
                }
                let fired: Vec<usize> = (first_forwarded..fds.len()).filter(|i| ready(*i)).collect();
                if fired.is_empty() && fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(());
                }
                fired.into_iter().map(|i| i - first_forwarded).collect::<Vec<_>>()
            };
            for index in fired {
                self.forward(index);
            }
        }
    }

    /// Sends the forwarded signal of descriptor `index` to the command.
    fn forward(&mut self, index: usize) {
        let Some((name, id)) = self.forwarding.as_ref().and_then(|(f, id)| Some((f.fired(index)?, *id))) else {
            return;
        };
        if self.remote_tty && name == "WINCH" {
            let size = crate::forward::terminal_size();
            let resize = ResizeParams { request_id: id.into(), rows: size.rows, cols: size.cols };
            let _ = self.notifier().notify(RESIZE_NOTIFICATION, &resize);
            return;
        }
        let params = SignalParams { request_id: id.into(), signal: name.to_owned() };
        if self.send(Signal::NAME, &params).is_ok() {
            Forwarder::after_forwarding(name);
        }
    }
}

/// Sends as much of `bytes` as one `sendmsg` takes, with `fds` attached; returns how much.
fn send_with_fds(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    loop {
        match sendmsg(socket, &[io::IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL) {
            Ok(sent) => return Ok(sent),
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Whether process `pid` is in this process's pid namespace (when that cannot be told, it is
/// taken to be: the check then stays strict).
fn same_pid_namespace(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let ns = |path: String| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
    match (ns("/proc/self/ns/pid".to_owned()), ns(format!("/proc/{pid}/ns/pid"))) {
        (Ok(mine), Ok(theirs)) => mine == theirs,
        _ => true,
    }
}
