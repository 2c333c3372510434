//! Warm workers: a persistent process, started from a manifest's `run`, that serves calls over
//! JSON-RPC on its standard input and output (one JSON text per line).
//!
//! For each call it gets a request `run {command, args, cwd, env, stdin}`; it sends its output as
//! notifications `output {stream, data | data_b64}` and answers `{exit_code}`. A timeout or cancel
//! sends the notification `cancel {id}`, waits the kill grace for the answer, then kills the
//! worker's process group. A worker that exits, or writes something that is not the protocol,
//! fails the call it was serving with a clear message and is not used again.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::manifest::Manifest;
use crate::runner::{Chunk, Invocation, NotFound, Outcome, Program, Stdin, deadline, emit};
use mcli_protocol::framing::{Frame, FrameCodec, Framing};
use mcli_protocol::{ExecStatus, Stream, decode_data};

/// The longest message a worker may write.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The most standard input a worker call takes: it goes to the worker whole, with the call.
pub const MAX_STDIN: usize = 16 * 1024 * 1024;

/// Why a worker call failed (the worker is not used again), or could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("cannot start the worker {}: {source}", program.display())]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("standard input for a worker command is limited to 16 MiB")]
    InputTooLarge,
    #[error("cannot send the call to the worker: {0}")]
    Send(std::io::Error),
    #[error("the worker refused the call: {0}")]
    Refused(String),
    #[error("the worker answered without an `exit_code`")]
    NoExitCode,
    #[error("the worker wrote something that is not JSON-RPC ({0})")]
    NotJsonRpc(serde_json::Error),
    #[error("the worker sent bad base64 output ({0})")]
    BadOutput(base64::DecodeError),
    #[error("the worker wrote a message over 16 MiB")]
    MessageTooLarge,
    #[error("the worker broke the protocol ({0})")]
    Framing(mcli_protocol::framing::FrameError),
    #[error("the worker exited during the call ({0})")]
    Exited(std::process::ExitStatus),
    #[error("the worker closed its output during the call")]
    Closed,
    #[error("cannot read from the worker ({0})")]
    Read(std::io::Error),
}

impl WorkerError {
    /// The exit status a call gets when its worker could not even start, as a shell's 127
    /// (not found) and 126 (cannot run); `None` for failures during the call.
    pub fn start_status(&self) -> Option<i32> {
        match self {
            WorkerError::NotFound(_) => Some(127),
            WorkerError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Some(127),
            WorkerError::Spawn { .. } => Some(126),
            _ => None,
        }
    }
}

/// The Python helper for writing workers (`from mcli_worker import command, serve`), built into
/// mcli so that a worker runs from any commands dir with the binaries alone.
pub const HELPER_SOURCE: &str = include_str!("../../python/mcli_daemon/worker.py");

/// The directory holding this release's `mcli_worker.py`, written once per version into the
/// runtime dir (`RUNTIME/python-VERSION/`, private to the user) on first use; `None` (and a
/// worker without it) when it cannot be written.
pub fn helper_dir() -> Option<PathBuf> {
    // Only a success is kept: a runtime dir that could not be written is tried again by the
    // next worker.
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut written = DIR.lock().unwrap_or_else(|p| p.into_inner());
    if written.is_none() {
        let runtime = crate::paths::runtime_dir(crate::paths::process_env);
        let dir = runtime.join(format!("python-{}", crate::VERSION));
        match write_helper(&runtime, &dir) {
            Ok(()) => *written = Some(dir),
            Err(err) => {
                eprintln!("{}: cannot provide mcli_worker.py in {}: {err}", crate::program_name(), dir.display())
            }
        }
    }
    written.clone()
}

/// Writes `mcli_worker.py` into `dir` (in the checked runtime dir `runtime`) unless it is there
/// already with the same text; atomically, so a worker never imports half a file.
fn write_helper(runtime: &Path, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    crate::paths::ensure_runtime_dir(runtime).map_err(std::io::Error::other)?;
    let file = dir.join("mcli_worker.py");
    if std::fs::read(&file).is_ok_and(|text| text == HELPER_SOURCE.as_bytes()) {
        return Ok(());
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return Err(err),
        _ => {}
    }
    if std::fs::symlink_metadata(dir)?.file_type().is_symlink() {
        return Err(std::io::Error::other("it is a symbolic link"));
    }
    let tmp = dir.join(format!(".mcli_worker.py.{}", std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)?;
    std::io::Write::write_all(&mut out, HELPER_SOURCE.as_bytes())?;
    std::fs::rename(&tmp, &file)
}

/// Ends a call whose worker could not start: the reason on the command's stderr, and the exit
/// status a shell would give (127 not found, 126 cannot run).
pub async fn start_failed(out: &mpsc::Sender<Chunk>, err: &WorkerError, started: Instant) -> Outcome {
    emit(out, Stream::Stderr, format!("{}: {err}\n", crate::program_name())).await;
    match err.start_status() {
        Some(code) => Outcome::exited(code, started),
        None => Outcome::ended(ExecStatus::Failed, started),
    }
}

/// Gathers a call's streamed standard input, whole, up to [`MAX_STDIN`].
pub async fn gather_stdin(mut rx: mpsc::Receiver<Bytes>) -> Result<Bytes, WorkerError> {
    let mut data = Vec::new();
    while let Some(chunk) = rx.recv().await {
        if data.len() + chunk.len() > MAX_STDIN {
            return Err(WorkerError::InputTooLarge);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.into())
}

/// A worker call's standard input, whole (a worker gets it with the call), gathered before the
/// call takes a worker, within the call's timeout (which the wait uses up) and cancel. `Err` is
/// how the call ends instead.
pub async fn call_input(
    inv: &mut Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Result<Option<Bytes>, Outcome> {
    let rx = match std::mem::take(&mut inv.stdin) {
        Stdin::Null => return Ok(None),
        Stdin::Bytes(bytes) => return Ok(Some(bytes)),
        Stdin::Stream(rx) => rx,
        Stdin::Inherit => own_stdin(),
    };
    let gathered = tokio::select! {
        gathered = gather_stdin(rx) => gathered,
        () = deadline(inv.timeout) => return Err(Outcome::ended(ExecStatus::TimedOut, started)),
        () = cancel.cancelled() => return Err(Outcome::ended(ExecStatus::Cancelled, started)),
    };
    inv.timeout = inv.timeout.map(|limit| limit.saturating_sub(started.elapsed()));
    match gathered {
        Ok(bytes) => Ok(Some(bytes)),
        Err(why) => {
            emit(out, Stream::Stderr, format!("{}: {why}\n", crate::program_name())).await;
            Err(Outcome::ended(ExecStatus::Failed, started))
        }
    }
}

/// This process's own standard input as a stream of chunks, read by a thread of its own (a
/// read that never ends must not keep the process from exiting).
pub fn own_stdin() -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        return;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    rx
}

/// One call's inputs.
#[derive(Debug, Clone)]
pub struct Call {
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Option<BTreeMap<String, String>>,
    pub stdin: Option<Bytes>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
}

impl Call {
    /// The call for an invocation of command `name`, with its input already gathered.
    pub fn of(name: &str, inv: Invocation, stdin: Option<Bytes>) -> Call {
        Call {
            command: name.to_owned(),
            args: inv.args,
            cwd: inv.cwd,
            env: inv.env,
            stdin,
            timeout: inv.timeout,
            kill_grace: inv.kill_grace,
        }
    }
}

/// A running worker process.
pub struct Worker {
    process: Process,
    pgid: Option<Pid>,
    stdin: pipe::Sender,
    stdout: pipe::Receiver,
    /// The number of the descriptor that reads its standard error, in this process (for a
    /// hand-over), and the task reading it.
    stderr_fd: i32,
    stderr_task: tokio::task::AbortHandle,
    /// Set once handed to a successor: dropping this value leaves the process running.
    released: bool,
    buf: BytesMut,
    codec: FrameCodec,
    next_id: u64,
    /// Calls served, for `status`.
    pub calls: u64,
    /// False once the worker must not serve again (it died, broke the protocol, or was killed).
    pub healthy: bool,
    /// The command of the last call it served, for `status`.
    pub last_command: String,
    /// The last lines it wrote on standard error, for the message when it fails.
    stderr_tail: Arc<StderrTail>,
}

/// The worker process: one this process started, or one that the server it took over from
/// started (`restart`), which this process can signal but not wait for.
enum Process {
    Spawned(Child),
    Adopted(Pid),
}

/// What a successor needs to take a worker over: its pid, the numbers of its pipes in the
/// process handing it over (the successor opens them through `/proc/PID/fd`), and its figures.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Handed {
    pub pid: u32,
    pub stdin_fd: i32,
    pub stdout_fd: i32,
    pub stderr_fd: i32,
    pub calls: u64,
    pub last_command: String,
}

/// The last [`TAIL_LINES`] lines of a worker's standard error, and whether it has closed.
#[derive(Default)]
struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    closed: tokio::sync::Notify,
    done: std::sync::atomic::AtomicBool,
}

/// How many of a worker's last standard error lines a failure shows.
const TAIL_LINES: usize = 10;
/// The longest of those lines, in characters.
const TAIL_LINE_CHARS: usize = 500;

impl StderrTail {
    fn push(&self, line: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(TAIL_LINE_CHARS).collect());
    }

    fn close(&self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    /// The lines, once standard error has closed or a moment has passed.
    async fn settled(&self) -> Vec<String> {
        let closed = self.closed.notified();
        if !self.done.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = tokio::time::timeout(Duration::from_millis(200), closed).await;
        }
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

impl Worker {
    /// Starts the worker of `manifest`, in the manifest's folder, with this process's
    /// environment plus the manifest's `env` (each call brings its client's environment and
    /// directory); its program resolves against the folder, then this process's PATH, since one
    /// worker serves every client. Its standard error lines go to `on_stderr`.
    ///
    /// The Python helper `mcli_worker` comes with mcli itself: its directory is put first on the
    /// worker's `PYTHONPATH`, so a worker needs no copy of it (see [`helper_dir`]).
    pub fn for_manifest(manifest: &Manifest, on_stderr: impl Fn(&str) + Send + 'static) -> Result<Worker, WorkerError> {
        let path_var = std::env::var("PATH").ok();
        let mut program = Program::of_manifest(manifest, path_var.as_deref())?;
        if let Some(helper) = helper_dir() {
            let theirs = program.extra_env.get("PYTHONPATH").cloned().or_else(|| std::env::var("PYTHONPATH").ok());
            let joined = match theirs.filter(|p| !p.is_empty()) {
                Some(theirs) => format!("{}:{theirs}", helper.display()),
                None => helper.display().to_string(),
            };
            program.extra_env.insert("PYTHONPATH".to_owned(), joined);
        }
        Worker::spawn(&program.path, &program.leading, manifest.dir(), &program.extra_env, on_stderr)
            .map_err(|source| WorkerError::Spawn { program: program.path, source })
    }

    /// Starts `program` with `args` in `dir`, with `env` added; its standard error lines go to
    /// `on_stderr`.
    fn spawn(
        program: &Path,
        args: &[String],
        dir: &Path,
        env: &BTreeMap<String, String>,
        on_stderr: impl Fn(&str) + Send + 'static,
    ) -> std::io::Result<Worker> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .envs(env)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Ended by `kill` (its whole group) when dropped, unless it was handed over.
            .kill_on_drop(false);
        let mut child = cmd.spawn()?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the worker's pipes are missing"));
        };
        let stdin = pipe::Sender::from_owned_fd(stdin.into_owned_fd()?)?;
        let stdout = pipe::Receiver::from_owned_fd(stdout.into_owned_fd()?)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr.into_owned_fd()?)?;
        Ok(Worker::of(Process::Spawned(child), pgid, stdin, stdout, stderr, on_stderr))
    }

    /// Takes over a worker that the server `from` handed over (see [`Handed`]): its pipes are
    /// opened anew through `/proc/FROM/fd`, while that server still runs.
    pub fn adopt(from: u32, handed: &Handed, on_stderr: impl Fn(&str) + Send + 'static) -> std::io::Result<Worker> {
        let path = |fd: i32| format!("/proc/{from}/fd/{fd}");
        let options = pipe::OpenOptions::new();
        let stdin = options.open_sender(path(handed.stdin_fd))?;
        let stdout = options.open_receiver(path(handed.stdout_fd))?;
        let stderr = options.open_receiver(path(handed.stderr_fd))?;
        let pid = Pid::from_raw(i32::try_from(handed.pid).map_err(std::io::Error::other)?);
        let mut worker = Worker::of(Process::Adopted(pid), Some(pid), stdin, stdout, stderr, on_stderr);
        worker.calls = handed.calls;
        worker.last_command = handed.last_command.clone();
        Ok(worker)
    }

    /// A worker on these pipes, its standard error read by a task of its own.
    fn of(
        process: Process,
        pgid: Option<Pid>,
        stdin: pipe::Sender,
        stdout: pipe::Receiver,
        stderr: pipe::Receiver,
        on_stderr: impl Fn(&str) + Send + 'static,
    ) -> Worker {
        use std::os::fd::AsRawFd as _;
        let stderr_fd = stderr.as_raw_fd();
        let stderr_tail = Arc::new(StderrTail::default());
        let tail = Arc::clone(&stderr_tail);
        let stderr_task = tokio::spawn(async move {
            // Lines of any bytes, cut at 64 KiB, until the worker closes its standard error.
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut reader).take(64 * 1024).read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        tail.push(text.trim_end());
                        on_stderr(text.trim_end());
                    }
                }
            }
            tail.close();
        })
        .abort_handle();
        Worker {
            process,
            pgid,
            stdin,
            stdout,
            stderr_fd,
            stderr_task,
            released: false,
            buf: BytesMut::with_capacity(8 * 1024),
            codec: FrameCodec::with_framing(Framing::Lines, MAX_MESSAGE),
            next_id: 1,
            calls: 0,
            healthy: true,
            last_command: String::new(),
            stderr_tail,
        }
    }

    /// What a successor needs to take this worker over (`None` once it has exited).
    pub fn handed(&self) -> Option<Handed> {
        use std::os::fd::AsRawFd as _;
        Some(Handed {
            pid: self.pid()?,
            stdin_fd: self.stdin.as_raw_fd(),
            stdout_fd: self.stdout.as_raw_fd(),
            stderr_fd: self.stderr_fd,
            calls: self.calls,
            last_command: self.last_command.clone(),
        })
    }

    /// Lets go of a worker a successor has taken over: its process runs on, and this process
    /// stops reading its standard error.
    pub fn release(mut self) {
        self.released = true;
        self.stderr_task.abort();
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Spawned(child) => child.id(),
            Process::Adopted(pid) => u32::try_from(pid.as_raw()).ok(),
        }
    }

    /// Whether the process still runs (an idle worker may have died since its last call).
    pub fn is_alive(&mut self) -> bool {
        self.healthy
            && match &mut self.process {
                Process::Spawned(child) => matches!(child.try_wait(), Ok(None)),
                // Not this process's child: alive while /proc shows it and not as a zombie.
                Process::Adopted(pid) => {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
                        == Some(false)
                }
            }
    }

    /// Serves one call, forwarding its output to `out` as it comes.
    pub async fn call(&mut self, call: &Call, out: &mpsc::Sender<Chunk>, cancel: &CancellationToken) -> Outcome {
        let started = Instant::now();
        let id = self.next_id;
        self.next_id += 1;
        self.calls += 1;
        let mut params = json!({ "command": call.command, "args": call.args });
        if let Some(cwd) = &call.cwd {
            params["cwd"] = json!(cwd);
        }
        if let Some(env) = &call.env {
            params["env"] = json!(env);
        }
        if let Some(stdin) = &call.stdin {
            use base64::Engine as _;
            params["stdin_b64"] = json!(base64::engine::general_purpose::STANDARD.encode(stdin));
        }
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": "run", "params": params });
        let deadline = async {
            match call.timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        // The deadline and the cancel also cover sending the call: a worker may not read.
        let ended = tokio::select! {
            reply = async {
                self.send(&request).await.map_err(WorkerError::Send)?;
                self.serve_reply(id, out).await
            } => return match reply {
                Ok(code) => finish(code, started),
                Err(why) => self.failed(out, why, started).await,
            },
            () = &mut deadline => ExecStatus::TimedOut,
            () = cancel.cancelled() => ExecStatus::Cancelled,
        };
        // Ask it to stop the call; if it does not answer within the grace period, kill it.
        let stop = json!({ "jsonrpc": "2.0", "method": "cancel", "params": { "id": id } });
        let answered = tokio::time::timeout(call.kill_grace, async {
            self.send(&stop).await.map_err(WorkerError::Send)?;
            self.serve_reply(id, out).await
        })
        .await;
        // Unless it answered the call properly in time, this worker is not used again.
        if !matches!(answered, Ok(Ok(_))) {
            self.kill();
        }
        Outcome { status: ended, exit_code: None, signal: None, duration: started.elapsed() }
    }

    async fn send(&mut self, message: &serde_json::Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await
    }

    /// Reads messages until the answer to `id`, forwarding output; the exit code, or why not.
    async fn serve_reply(&mut self, id: u64, out: &mpsc::Sender<Chunk>) -> Result<i32, WorkerError> {
        #[derive(Deserialize)]
        struct Message {
            id: Option<serde_json::Value>,
            method: Option<String>,
            params: Option<serde_json::Value>,
            result: Option<serde_json::Value>,
            error: Option<serde_json::Value>,
        }
        loop {
            let text = self.read_message().await?;
            let message: Message = serde_json::from_slice(&text).map_err(WorkerError::NotJsonRpc)?;
            if message.method.as_deref() == Some("output") {
                let params = message.params.unwrap_or_default();
                let stream = if params["stream"] == "stderr" { Stream::Stderr } else { Stream::Stdout };
                let data = decode_data(params["data"].as_str(), params["data_b64"].as_str())
                    .map_err(WorkerError::BadOutput)?;
                let _ = out.send(Chunk { stream, data: Bytes::from(data) }).await;
                continue;
            }
            if message.id.as_ref().and_then(serde_json::Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = message.error {
                return Err(WorkerError::Refused(error["message"].as_str().unwrap_or("error").to_owned()));
            }
            let result = message.result.unwrap_or_default();
            return result["exit_code"].as_i64().map(|c| c as i32).ok_or(WorkerError::NoExitCode);
        }
    }

    async fn read_message(&mut self) -> Result<Bytes, WorkerError> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(Frame::Message(text))) => return Ok(text),
                Ok(Some(Frame::TooLarge { .. })) => return Err(WorkerError::MessageTooLarge),
                Ok(None) => {}
                Err(e) => return Err(WorkerError::Framing(e)),
            }
            match self.stdout.read_buf(&mut self.buf).await {
                Ok(0) => {
                    // Its output closed: give the process a moment to be reaped, to say how it ended.
                    let Process::Spawned(child) = &mut self.process else { return Err(WorkerError::Closed) };
                    let status =
                        tokio::time::timeout(Duration::from_millis(200), child.wait()).await.ok().and_then(Result::ok);
                    return Err(status.map_or(WorkerError::Closed, WorkerError::Exited));
                }
                Ok(_) => {}
                Err(e) => return Err(WorkerError::Read(e)),
            }
        }
    }

    /// A call that failed because of the worker: says why on the command's stderr.
    async fn failed(&mut self, out: &mpsc::Sender<Chunk>, why: WorkerError, started: Instant) -> Outcome {
        self.kill();
        let mut text = format!("{}: {why}; the next call starts a new worker\n", crate::program_name());
        let tail = self.stderr_tail.settled().await;
        if !tail.is_empty() {
            text.push_str(&format!("{}: the worker's last lines on standard error:\n", crate::program_name()));
            for line in tail {
                text.push_str(&format!("  {line}\n"));
            }
        }
        let _ = out.send(Chunk { stream: Stream::Stderr, data: Bytes::from(text) }).await;
        Outcome { status: ExecStatus::Failed, exit_code: None, signal: None, duration: started.elapsed() }
    }

    /// Ends the worker and anything it started.
    pub fn kill(&mut self) {
        self.healthy = false;
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        if let Process::Spawned(child) = &mut self.process {
            let _ = child.start_kill();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.released {
            self.kill();
        }
    }
}

fn finish(code: i32, started: Instant) -> Outcome {
    let status = if code == 0 { ExecStatus::Completed } else { ExecStatus::Failed };
    Outcome { status, exit_code: Some(code), signal: None, duration: started.elapsed() }
}
