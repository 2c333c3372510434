//! Runs a resolved command and reports how it ended. Output goes out as [`Chunk`]s on a bounded
//! channel as it is produced, so a slow reader slows the command instead of growing a buffer.
//! The server forwards the chunks as `mcli/output` notifications; the client, running a command
//! itself, writes them to its own stdout and stderr. Both see the same semantics.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::manifest::Manifest;
use crate::registry::{Builtin, CommandKind, CommandSpec};
use mcli_protocol::{ExecStatus, ExecuteResult, Seconds, Stream, encode_output};

/// How long output may still drain after the command's main process has exited. A background
/// process the command left behind may hold the pipes open for ever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// The size of one read from a command's stdout or stderr.
const READ_CHUNK: usize = 32 * 1024;

/// Where a command's standard input comes from.
#[derive(Debug, Default)]
pub enum Stdin {
    /// Empty: the command reads end of file at once.
    #[default]
    Null,
    /// These bytes, then end of file.
    Bytes(Bytes),
    /// Chunks as they arrive; the channel closing is end of file.
    Stream(mpsc::Receiver<Bytes>),
    /// This process's own standard input (a command run by the client itself).
    Inherit,
}

/// What to run: the arguments and surroundings of one execution.
#[derive(Debug, Default)]
pub struct Invocation {
    pub args: Vec<String>,
    /// The directory to run in; the current one when absent.
    pub cwd: Option<PathBuf>,
    /// The complete environment; the current one when absent.
    pub env: Option<BTreeMap<String, String>>,
    pub stdin: Stdin,
    /// How long it may run; no limit when absent.
    pub timeout: Option<Duration>,
    /// The pause between SIGTERM and SIGKILL when the command is ended.
    pub kill_grace: Duration,
}

/// Puts captured output in a result: `stdout`/`stderr` for UTF-8, the `_b64` fields otherwise.
pub fn attach_output(result: &mut ExecuteResult, stdout: &[u8], stderr: &[u8], truncated: bool) {
    (result.stdout, result.stdout_b64) = encode_output(stdout);
    (result.stderr, result.stderr_b64) = encode_output(stderr);
    result.truncated = Some(truncated);
}

/// A piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Bytes,
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
}

impl Outcome {
    /// The `execute` result for this outcome, without captured output.
    pub fn to_result(&self, id: u64, command: String, cached: bool) -> ExecuteResult {
        ExecuteResult {
            id,
            command,
            status: self.status,
            exit_code: self.exit_code,
            signal: self.signal,
            duration_ms: self.duration.as_millis() as u64,
            cached,
            stdout: None,
            stderr: None,
            stdout_b64: None,
            stderr_b64: None,
            truncated: None,
        }
    }

    fn exited(code: i32, started: Instant) -> Self {
        let status = if code == 0 { ExecStatus::Completed } else { ExecStatus::Failed };
        Outcome { status, exit_code: Some(code), signal: None, duration: started.elapsed() }
    }

    /// An execution that ended without an exit status of its own (timed out, cancelled, ...).
    pub fn ended(status: ExecStatus, started: Instant) -> Self {
        Outcome { status, exit_code: None, signal: None, duration: started.elapsed() }
    }

    fn from_exit(status: ExitStatus, ended: Option<ExecStatus>, started: Instant) -> Self {
        let (exit_code, signal) = (status.code(), status.signal());
        let status = match ended {
            Some(ended) => ended,
            None if exit_code == Some(0) => ExecStatus::Completed,
            None => ExecStatus::Failed,
        };
        Outcome { status, exit_code, signal, duration: started.elapsed() }
    }
}

/// The time limit of a run: the call's own, else the manifest's, else `command_timeout` (0
/// meaning none).
pub fn effective_timeout(
    requested: Option<Duration>,
    spec: &CommandSpec,
    command_timeout: Seconds,
) -> Option<Duration> {
    let manifest = match &spec.kind {
        CommandKind::Manifest(manifest) => manifest.timeout,
        _ => None,
    };
    requested.or(manifest).or_else(|| Some(command_timeout).filter(|s| !s.is_zero()).map(Seconds::duration))
}

/// Runs `spec` and waits for it to end, is cancelled, or times out (`inv.timeout` is the final
/// limit: see [`effective_timeout`]).
pub async fn run(
    spec: &CommandSpec,
    inv: Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
) -> Outcome {
    let started = Instant::now();
    match &spec.kind {
        CommandKind::Builtin(builtin) => run_builtin_bounded(*builtin, &inv, out, cancel, started).await,
        CommandKind::Script(path) => {
            let program = Program { path: path.clone(), leading: Vec::new(), extra_env: BTreeMap::new() };
            run_process(program, inv, out, cancel, started).await
        }
        CommandKind::Manifest(manifest) if manifest.worker.is_some() => {
            run_worker_once(manifest, &spec.name, inv, out, cancel, started).await
        }
        CommandKind::Manifest(manifest) => match Program::of_manifest(manifest, &inv) {
            Ok(program) => run_process(program, inv, out, cancel, started).await,
            Err(message) => {
                emit(out, Stream::Stderr, format!("mcli: {message}\n")).await;
                Outcome::exited(127, started)
            }
        },
    }
}

/// A worker command run by itself (the client's local mode): start the worker, serve one call,
/// end it.
async fn run_worker_once(
    manifest: &Manifest,
    name: &str,
    mut inv: Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Outcome {
    let stdin = match worker_stdin(&mut inv, out, cancel, started).await {
        Ok(stdin) => stdin,
        Err(outcome) => return outcome,
    };
    let spawned = Program::of_manifest(manifest, &inv).and_then(|program| {
        let dir = manifest.file.parent().unwrap_or(Path::new("/"));
        crate::worker::Worker::spawn(&program.path, &program.leading, dir, &program.extra_env, |line| {
            eprintln!("{line}")
        })
        .map_err(|e| format!("cannot start the worker {}: {e}", program.path.display()))
    });
    let mut worker = match spawned {
        Ok(worker) => worker,
        Err(message) => {
            emit(out, Stream::Stderr, format!("mcli: {message}\n")).await;
            return Outcome::exited(127, started);
        }
    };
    let call = crate::worker::Call::of(name, inv, stdin);
    let outcome = worker.call(&call, out, cancel).await;
    worker.kill();
    outcome
}

/// A worker call's standard input, whole (a worker gets it with the call), gathered before the
/// call takes a worker, within the call's timeout (which the wait uses up) and cancel. `Err` is
/// how the call ends instead.
pub async fn worker_stdin(
    inv: &mut Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Result<Option<Bytes>, Outcome> {
    let rx = match std::mem::take(&mut inv.stdin) {
        Stdin::Null => return Ok(None),
        Stdin::Bytes(bytes) => return Ok(Some(bytes)),
        Stdin::Stream(rx) => rx,
        Stdin::Inherit => crate::worker::own_stdin(),
    };
    let gathered = tokio::select! {
        gathered = crate::worker::gather_stdin(rx) => gathered,
        () = deadline(inv.timeout) => return Err(Outcome::ended(ExecStatus::TimedOut, started)),
        () = cancel.cancelled() => return Err(Outcome::ended(ExecStatus::Cancelled, started)),
    };
    inv.timeout = inv.timeout.map(|limit| limit.saturating_sub(started.elapsed()));
    match gathered {
        Ok(bytes) => Ok(Some(bytes)),
        Err(why) => {
            emit(out, Stream::Stderr, format!("mcli: {why}\n")).await;
            Err(Outcome::ended(ExecStatus::Failed, started))
        }
    }
}

async fn run_builtin_bounded(
    builtin: Builtin,
    inv: &Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Outcome {
    tokio::select! {
        code = run_builtin(builtin, inv, out) => Outcome::exited(code, started),
        () = deadline(inv.timeout) => Outcome::ended(ExecStatus::TimedOut, started),
        () = cancel.cancelled() => Outcome::ended(ExecStatus::Cancelled, started),
    }
}

async fn deadline(timeout: Option<Duration>) {
    match timeout {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// A resolved program with the arguments and environment its source adds.
struct Program {
    path: PathBuf,
    leading: Vec<String>,
    extra_env: BTreeMap<String, String>,
}

impl Program {
    /// Resolves a manifest's `run`: the program against the manifest's folder, then PATH; the
    /// other elements that are relative paths of files in the manifest's folder (`resize.py`,
    /// `lib/tool.sh`: with a `/` or an extension) become absolute paths there.
    fn of_manifest(manifest: &Manifest, inv: &Invocation) -> Result<Program, String> {
        let path_var = match &inv.env {
            Some(env) => env.get("PATH").cloned(),
            None => std::env::var("PATH").ok(),
        };
        let (path, leading) = resolve_manifest(manifest, path_var.as_deref())?;
        Ok(Program { path, leading, extra_env: manifest.env.clone() })
    }
}

/// A manifest's `run` as a program and its leading arguments; see [`Program::of_manifest`].
pub fn resolve_manifest(manifest: &Manifest, path_var: Option<&str>) -> Result<(PathBuf, Vec<String>), String> {
    {
        let dir = manifest.file.parent().unwrap_or(Path::new("/"));
        let first = &manifest.run[0];
        let path = if first.contains('/') || is_executable(&dir.join(first)) {
            dir.join(first)
        } else {
            search_path(first, path_var.unwrap_or("/usr/bin:/bin")).ok_or_else(|| {
                format!("cannot run `{first}` for {}: not in {} nor on PATH", manifest.file.display(), dir.display())
            })?
        };
        let leading = manifest.run[1..]
            .iter()
            .map(|arg| {
                let local = dir.join(arg);
                let path_like = arg.contains('/') || Path::new(arg).extension().is_some();
                if path_like && !arg.starts_with('-') && !arg.starts_with('/') && local.is_file() {
                    local.display().to_string()
                } else {
                    arg.clone()
                }
            })
            .collect();
        Ok((path, leading))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn search_path(program: &str, path_var: &str) -> Option<PathBuf> {
    path_var.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).find(|p| is_executable(p))
}

/// Kills the process group on drop unless disarmed: a command never outlives its execution
/// because the future running it was dropped.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

async fn run_process(
    program: Program,
    inv: Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Outcome {
    let mut cmd = tokio::process::Command::new(&program.path);
    cmd.args(&program.leading).args(&inv.args).process_group(0).kill_on_drop(false);
    if let Some(cwd) = &inv.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(env) = &inv.env {
        cmd.env_clear().envs(env);
    }
    cmd.envs(&program.extra_env);
    cmd.stdin(match &inv.stdin {
        Stdin::Null => Stdio::null(),
        Stdin::Bytes(_) | Stdin::Stream(_) => Stdio::piped(),
        Stdin::Inherit => Stdio::inherit(),
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            let code = if err.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
            let place = match &inv.cwd {
                Some(cwd) if !cwd.is_dir() => format!(" in {}: no such directory", cwd.display()),
                _ => format!(": {err}"),
            };
            emit(out, Stream::Stderr, format!("mcli: cannot run {}{place}\n", program.path.display())).await;
            return Outcome::exited(code, started);
        }
    };
    let mut group = GroupGuard { pgid: child.id().map(|id| Pid::from_raw(id as i32)) };

    let stdin_task = child.stdin.take().map(|mut pipe| {
        let stdin = inv.stdin;
        tokio::spawn(async move {
            // A command that exits without reading all its input is not an error.
            match stdin {
                Stdin::Bytes(bytes) => {
                    let _ = pipe.write_all(&bytes).await;
                }
                Stdin::Stream(mut chunks) => {
                    while let Some(chunk) = chunks.recv().await {
                        if pipe.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                }
                Stdin::Null | Stdin::Inherit => {}
            }
        })
    });
    let mut pumps = tokio::spawn(pump_output(child.stdout.take(), child.stderr.take(), out.clone()));

    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        () = deadline(inv.timeout) => Err(ExecStatus::TimedOut),
        () = cancel.cancelled() => Err(ExecStatus::Cancelled),
    };
    let (status, ended) = match ended {
        Ok(status) => (status, None),
        Err(why) => {
            // End the whole group: SIGTERM, a grace period, then SIGKILL for what is left.
            group.signal(Signal::SIGTERM);
            let status = match tokio::time::timeout(inv.kill_grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    group.signal(Signal::SIGKILL);
                    child.wait().await
                }
            };
            group.signal(Signal::SIGKILL);
            (status, Some(why))
        }
    };
    // The leader is reaped; its process group id may be reused once the group is empty, so
    // signal it no more.
    group.pgid = None;
    if let Some(task) = stdin_task {
        task.abort();
    }
    if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut pumps).await.is_err() {
        pumps.abort();
    }
    match status {
        Ok(status) => Outcome::from_exit(status, ended, started),
        Err(err) => {
            emit(out, Stream::Stderr, format!("mcli: lost track of {}: {err}\n", program.path.display())).await;
            Outcome::ended(ended.unwrap_or(ExecStatus::Failed), started)
        }
    }
}

/// Forwards stdout and stderr, each as it comes, until both reach end of file.
async fn pump_output(
    stdout: Option<impl AsyncRead + Unpin>,
    stderr: Option<impl AsyncRead + Unpin>,
    out: mpsc::Sender<Chunk>,
) {
    tokio::join!(pump(stdout, Stream::Stdout, &out), pump(stderr, Stream::Stderr, &out));
}

async fn pump(source: Option<impl AsyncRead + Unpin>, stream: Stream, out: &mpsc::Sender<Chunk>) {
    let Some(mut source) = source else { return };
    loop {
        let mut buf = vec![0u8; READ_CHUNK];
        match source.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                // Waiting here when the reader is slow is the backpressure: the pipe fills and
                // the command waits too.
                if out.send(Chunk { stream, data: Bytes::from(buf) }).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn emit(out: &mpsc::Sender<Chunk>, stream: Stream, text: impl Into<Bytes>) {
    // A closed channel means nobody reads the output any more; the caller cancels the run.
    let _ = out.send(Chunk { stream, data: text.into() }).await;
}

/// Reports a usage error of a built-in, the way command-line tools do: message on stderr, exit 2.
async fn usage(out: &mpsc::Sender<Chunk>, name: &str, problem: &str, usage: &str) -> i32 {
    emit(out, Stream::Stderr, format!("{name}: {problem}\nusage: {usage}\n")).await;
    2
}

async fn run_builtin(builtin: Builtin, inv: &Invocation, out: &mpsc::Sender<Chunk>) -> i32 {
    let args = &inv.args;
    match builtin {
        Builtin::Hello => {
            const USAGE: &str = "hello [NAME] [--verbose]";
            let mut name = None;
            let mut verbose = false;
            for arg in args {
                match arg.as_str() {
                    "--verbose" | "-v" => verbose = true,
                    "--help" | "-h" => {
                        emit(out, Stream::Stdout, format!("usage: {USAGE}\n")).await;
                        return 0;
                    }
                    flag if flag.starts_with('-') && flag.len() > 1 => {
                        return usage(out, "hello", &format!("unknown option `{flag}`"), USAGE).await;
                    }
                    word if name.is_none() => name = Some(word),
                    word => {
                        return usage(out, "hello", &format!("unexpected argument `{word}`"), USAGE).await;
                    }
                }
            }
            let suffix = if verbose { " (verbose mode)" } else { "" };
            emit(out, Stream::Stdout, format!("Hello {}!{suffix}\n", name.unwrap_or("World"))).await;
            0
        }
        Builtin::Echo => {
            emit(out, Stream::Stdout, format!("{}\n", args.join(" "))).await;
            0
        }
        Builtin::Pwd => {
            let dir = match &inv.cwd {
                Some(dir) => dir.clone(),
                None => std::env::current_dir().unwrap_or_default(),
            };
            emit(out, Stream::Stdout, format!("{}\n", dir.display())).await;
            0
        }
        Builtin::Sleep => {
            const USAGE: &str = "sleep SECONDS";
            let secs = match args.as_slice() {
                [one] => one.parse::<f64>().ok().and_then(|s| Seconds::new(s).ok()),
                _ => None,
            };
            let Some(secs) = secs else {
                return usage(out, "sleep", "expected one number of seconds", USAGE).await;
            };
            tokio::time::sleep(secs.duration()).await;
            0
        }
        Builtin::Exit => {
            const USAGE: &str = "exit [CODE]";
            match args.as_slice() {
                [] => 0,
                [code] => match code.parse::<u8>() {
                    Ok(code) => i32::from(code),
                    Err(_) => usage(out, "exit", &format!("`{code}` is not a status from 0 to 255"), USAGE).await,
                },
                _ => usage(out, "exit", "expected at most one status", USAGE).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    async fn run_named(name: &str, args: &[&str], timeout: Option<Duration>) -> (Outcome, String, String) {
        let spec = Registry::builtin().get(name).unwrap();
        let inv = Invocation { args: args.iter().map(|s| s.to_string()).collect(), timeout, ..Default::default() };
        let (tx, mut rx) = mpsc::channel(16);
        let outcome = run(&spec, inv, &tx, &CancellationToken::new()).await;
        drop(tx);
        let (mut stdout, mut stderr) = (String::new(), String::new());
        while let Some(chunk) = rx.recv().await {
            let text = String::from_utf8(chunk.data.to_vec()).unwrap();
            match chunk.stream {
                Stream::Stdout => stdout += &text,
                Stream::Stderr => stderr += &text,
            }
        }
        (outcome, stdout, stderr)
    }

    #[tokio::test]
    async fn hello_greets() {
        let (outcome, out, _) = run_named("hello", &["World", "--verbose"], None).await;
        assert_eq!(out, "Hello World! (verbose mode)\n");
        assert_eq!((outcome.status, outcome.exit_code), (ExecStatus::Completed, Some(0)));
        assert_eq!(run_named("hello", &[], None).await.1, "Hello World!\n");
    }

    #[tokio::test]
    async fn usage_errors_exit_2_on_stderr() {
        let (outcome, out, err) = run_named("hello", &["--frob"], None).await;
        assert_eq!((outcome.status, outcome.exit_code), (ExecStatus::Failed, Some(2)));
        assert_eq!(out, "");
        assert_eq!(err, "hello: unknown option `--frob`\nusage: hello [NAME] [--verbose]\n");
    }

    #[tokio::test]
    async fn exit_status_and_timeout() {
        assert_eq!(run_named("exit", &["7"], None).await.0.exit_code, Some(7));
        let (outcome, _, _) = run_named("sleep", &["5"], Some(Duration::from_millis(20))).await;
        assert_eq!((outcome.status, outcome.exit_code), (ExecStatus::TimedOut, None));
    }
}
