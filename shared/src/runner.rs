//! Runs a resolved command and reports how it ended. Output goes out as [`Chunk`]s on a bounded
//! channel as it is produced, so a slow reader slows the command instead of growing a buffer.
//! The server forwards the chunks as `mcli/output` notifications; the client, running a command
//! itself, writes them to its own stdout and stderr. Both see the same semantics.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::manifest::Manifest;
use crate::registry::{CommandKind, CommandSpec};
use crate::streams::{Group, Passed};
use crate::tree::{TAG_VAR, Tree};
use mcli_protocol::{ExecStatus, ExecuteResult, Stream, encode_output};

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
    /// Streams the command reads and writes itself instead of pipes (a process only; a
    /// built-in or a worker call ignores them).
    pub passed: Passed,
    /// Filled with the command's process group while it runs, for forwarded signals.
    pub group: Option<Group>,
    /// The master side of the pseudo-terminal whose slave `passed` holds: the command is made a
    /// session leader with it as its controlling terminal, its output is read from the master
    /// and its input written there.
    pub tty: Option<OwnedFd>,
    /// Run the process in the caller's process group rather than a group of its own: the
    /// client's local mode with its own terminal, where the terminal's signals and job control
    /// (Ctrl-C, Ctrl-Z, `fg`, reading the terminal) must reach the command as in a direct run.
    /// A timeout or cancel then ends it through its descendants and tag, never by group.
    pub in_callers_group: bool,
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
            time_limit: None,
        }
    }

    /// An execution that exited with `code`.
    pub fn exited(code: i32, started: Instant) -> Self {
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

/// The time limit of a run and what set it: the call's own, else the manifest's, else
/// `command_timeout` of `config` (0 meaning none).
pub fn time_limit(requested: Option<Duration>, spec: &CommandSpec, config: &Config) -> Option<(Duration, String)> {
    if let Some(limit) = requested {
        // A call's timeout of 0 asks for no limit at all.
        return (!limit.is_zero()).then(|| (limit, "the call's timeout (-t)".to_owned()));
    }
    if let CommandKind::Manifest(manifest) = &spec.kind
        && let Some(limit) = manifest.timeout
    {
        return Some((limit, format!("`timeout` in {}", manifest.file.display())));
    }
    let limit = Some(config.api_daemon.command_timeout).filter(|s| !s.is_zero())?.duration();
    let set_by = match &config.file {
        Some(file) => format!("command_timeout in {}", file.display()),
        None => "command_timeout, the default".to_owned(),
    };
    Some((limit, set_by))
}

/// Never ends without a limit; with one, ends when it has passed.
pub async fn deadline(timeout: Option<Duration>) {
    match timeout {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// A resolved program with the arguments and environment its source adds.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
    /// Arguments before the call's own (a manifest's `run` after its program).
    pub leading: Vec<String>,
    /// Variables added to the caller's environment (a manifest's `env`).
    pub extra_env: BTreeMap<String, String>,
}

/// A manifest's program that cannot be found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot run `{program}` for {}: not in {} nor on PATH", manifest.display(), dir.display())]
pub struct NotFound {
    pub program: String,
    pub manifest: PathBuf,
    pub dir: PathBuf,
}

impl Program {
    /// An executable file of a commands dir.
    pub fn script(path: PathBuf) -> Program {
        Program { path, leading: Vec::new(), extra_env: BTreeMap::new() }
    }

    /// Resolves a manifest's `run`: the program against the manifest's folder, then `path_var`
    /// (PATH); the other elements that are relative paths of files in the manifest's folder
    /// (`resize.py`, `lib/tool.sh`: with a `/` or an extension) become absolute paths there.
    pub fn of_manifest(manifest: &Manifest, path_var: Option<&str>) -> Result<Program, NotFound> {
        let dir = manifest.dir();
        let first = &manifest.run[0];
        let path = if first.contains('/') || is_executable(&dir.join(first)) {
            dir.join(first)
        } else {
            search_path(first, path_var.unwrap_or("/usr/bin:/bin")).ok_or_else(|| NotFound {
                program: first.clone(),
                manifest: manifest.file.clone(),
                dir: dir.to_owned(),
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
        Ok(Program { path, leading, extra_env: manifest.env.clone() })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn search_path(program: &str, path_var: &str) -> Option<PathBuf> {
    path_var.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).find(|p| is_executable(p))
}

/// Kills the command's whole tree on drop: a command never outlives its execution because the
/// future running it was dropped.
struct TreeGuard(Tree);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        self.0.signal(Signal::SIGKILL);
    }
}

/// Runs `program` with the invocation's arguments in a process group of its own, until it
/// exits, times out or is cancelled; a timeout or cancel ends the whole group (SIGTERM, the kill
/// grace, SIGKILL).
pub async fn run_process(
    program: Program,
    mut inv: Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Outcome {
    let tree = Tree::new();
    let passed = std::mem::take(&mut inv.passed);
    let tty = inv.tty.take();
    let mut child = match command(&program, &inv, passed, tty.is_some(), tree.tag()).spawn() {
        Ok(child) => child,
        Err(err) => {
            let code = if err.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
            let place = match &inv.cwd {
                Some(cwd) if !cwd.is_dir() => format!(" in {}: no such directory", cwd.display()),
                _ => format!(": {err}"),
            };
            note(out, format!("cannot run {}{place}", program.path.display())).await;
            return Outcome::exited(code, started);
        }
    };
    // Declared after the child, so dropped before it: a dropped execution ends the tree while
    // its leader is not yet reaped (and its ids cannot have been reused).
    let mut tree = TreeGuard(tree);
    let leader = child.id().map(|id| Pid::from_raw(id as i32));
    if inv.in_callers_group {
        tree.0.set_leader_in_callers_group(leader);
    } else {
        tree.0.set_leader(leader);
    }
    let group = GroupGuard::set(inv.group.take(), leader);
    let io = Io::start(&mut child, std::mem::take(&mut inv.stdin), tty, out);

    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        () = deadline(inv.timeout) => Err(ExecStatus::TimedOut),
        () = cancel.cancelled() => Err(ExecStatus::Cancelled),
    };
    let (status, ended) = match ended {
        Ok(status) => (status, None),
        Err(why) => (end_tree(&mut child, &mut tree.0, inv.kill_grace).await, Some(why)),
    };
    // The leader is reaped: its ids may be reused, so nothing is signalled any more. What it
    // left behind after a normal exit runs on (a command may start a background service); only
    // a timeout, a cancel or a dropped execution ends the rest of the tree.
    tree.0.let_go();
    drop(group);
    io.finish().await;
    match status {
        Ok(status) => Outcome::from_exit(status, ended, started),
        Err(err) => {
            note(out, format!("lost track of {}: {err}", program.path.display())).await;
            Outcome::ended(ended.unwrap_or(ExecStatus::Failed), started)
        }
    }
}

/// Says `text` on the command's standard error as this program (`mcli-server: ...`).
async fn note(out: &mpsc::Sender<Chunk>, text: String) {
    emit(out, Stream::Stderr, format!("{}: {text}\n", crate::program_name())).await;
}

/// Empties the command's [`Group`] when the command is over, or its execution dropped.
struct GroupGuard(Option<Group>);

impl GroupGuard {
    /// Fills `group` with the group that `leader` leads.
    fn set(group: Option<Group>, leader: Option<Pid>) -> GroupGuard {
        if let Some(group) = &group {
            group.set(leader);
        }
        GroupGuard(group)
    }
}

/// The tasks that move a command's input and output.
struct Io {
    stdin: Option<tokio::task::JoinHandle<()>>,
    pumps: tokio::task::JoinHandle<()>,
    /// Input written to the command's terminal, and its output read, for a command on a
    /// pseudo-terminal.
    master_feed: Option<tokio::task::JoinHandle<()>>,
    master_pump: Option<MasterPump>,
}

impl Io {
    fn start(child: &mut tokio::process::Child, stdin: Stdin, tty: Option<OwnedFd>, out: &mpsc::Sender<Chunk>) -> Io {
        let (master_pump, master_feed, stdin) = match tty {
            Some(master) => {
                let (pump, feed) = attach_tty(master, stdin, out);
                (pump, feed, Stdin::Null)
            }
            None => (None, None, stdin),
        };
        Io {
            stdin: child.stdin.take().map(|pipe| tokio::spawn(feed_stdin(pipe, stdin))),
            pumps: tokio::spawn(pump_output(child.stdout.take(), child.stderr.take(), out.clone())),
            master_feed,
            master_pump,
        }
    }

    /// Once the command has exited: stops feeding it, and lets its output drain for
    /// [`DRAIN_AFTER_EXIT`] at most.
    async fn finish(mut self) {
        for task in [self.stdin.take(), self.master_feed.take()].into_iter().flatten() {
            task.abort();
        }
        if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut self.pumps).await.is_err() {
            self.pumps.abort();
        }
        if let Some(mut master) = self.master_pump {
            // A process left behind on the terminal keeps it open: its output is no longer
            // waited for, and the terminal is closed (hung up) once the reader, stopped as
            // `master` drops, sees it.
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut master.pump).await;
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = &self.0 {
            group.clear();
        }
    }
}

/// The child process for `program`: the call's directory and environment (plus the program's
/// own variables), its own process group, stdout and stderr piped unless `passed` brings them.
fn command(program: &Program, inv: &Invocation, passed: Passed, tty: bool, tag: &str) -> tokio::process::Command {
    let mut cmd = match crate::pty::setsid_program().filter(|_| tty) {
        // Its own session (so its own process group) with the terminal on stdin as its
        // controlling terminal.
        Some(setsid) => {
            let mut cmd = tokio::process::Command::new(setsid);
            cmd.arg("--ctty").arg(&program.path);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(&program.path);
            if !inv.in_callers_group {
                cmd.process_group(0);
            }
            cmd
        }
    };
    cmd.args(&program.leading).args(&inv.args).kill_on_drop(false);
    if let Some(cwd) = &inv.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(env) = &inv.env {
        cmd.env_clear().envs(env);
    }
    cmd.envs(&program.extra_env).env(TAG_VAR, tag);
    cmd.stdin(match (&inv.stdin, passed.stdin) {
        (_, Some(fd)) => Stdio::from(fd),
        (Stdin::Null, None) => Stdio::null(),
        (Stdin::Bytes(_) | Stdin::Stream(_), None) => Stdio::piped(),
        (Stdin::Inherit, None) => Stdio::inherit(),
    });
    cmd.stdout(passed.stdout.map_or_else(Stdio::piped, Stdio::from));
    cmd.stderr(passed.stderr.map_or_else(Stdio::piped, Stdio::from));
    cmd
}

/// Starts reading the terminal's output and writing its input; the tasks that do it.
fn attach_tty(
    master: OwnedFd,
    stdin: Stdin,
    out: &mpsc::Sender<Chunk>,
) -> (Option<MasterPump>, Option<tokio::task::JoinHandle<()>>) {
    let feed = master.try_clone().ok().map(|writer| tokio::spawn(feed_master(writer, stdin)));
    let out = out.clone();
    let deliver = move |data| out.blocking_send(Chunk { stream: Stream::Stdout, data }).is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let pump = crate::pty::pump_master(master, Arc::clone(&stop), deliver);
    (Some(MasterPump { pump, stop }), feed)
}

/// The reader of a command's terminal, stopped when this is dropped (the call is over, or its
/// execution was dropped).
struct MasterPump {
    pump: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Drop for MasterPump {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes the command's input to its terminal as it comes (what the user types, raw).
async fn feed_master(master: OwnedFd, stdin: Stdin) {
    match stdin {
        Stdin::Bytes(bytes) => {
            let _ = crate::pty::write_all(&master, bytes).await;
        }
        Stdin::Stream(mut chunks) => {
            while let Some(chunk) = chunks.recv().await {
                if crate::pty::write_all(&master, chunk).await.is_err() {
                    return;
                }
            }
        }
        Stdin::Null | Stdin::Inherit => {}
    }
}

/// Writes the command's input into its stdin pipe; a command that exits without reading all of
/// it is not an error.
async fn feed_stdin(mut pipe: tokio::process::ChildStdin, stdin: Stdin) {
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
}

/// Ends the whole tree: SIGTERM, the grace period, then SIGKILL for what is left (the leader
/// too, if it is still there); returns how the leader ended.
async fn end_tree(child: &mut tokio::process::Child, tree: &mut Tree, grace: Duration) -> io::Result<ExitStatus> {
    tree.signal(Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tree.signal(Signal::SIGKILL);
            child.wait().await
        }
    };
    // What is left of its group and its tagged descendants goes too; again while a pass still
    // finds some (one may have forked meanwhile), a few times at most.
    tree.leader_reaped();
    for _ in 0..3 {
        if tree.signal(Signal::SIGKILL) == 0 {
            break;
        }
    }
    status
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

pub(crate) async fn emit(out: &mpsc::Sender<Chunk>, stream: Stream, text: impl Into<Bytes>) {
    // A closed channel means nobody reads the output any more; the caller cancels the run.
    let _ = out.send(Chunk { stream, data: text.into() }).await;
}
