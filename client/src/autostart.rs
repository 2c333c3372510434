//! Finding a running server, or starting one, race-free.
//!
//! Starters serialize on `NAME.start.lock`: the first one that finds no server spawns one,
//! detached (`setsid`, standard input from /dev/null, standard error to the server log), and
//! waits for the readiness line on a pipe; the others, once they get the lock, find the new
//! server listening. Every wait is bounded. A server that cannot start writes its error on that
//! pipe instead of the readiness line (its log may be unwritable), and the starter reports it;
//! a server that dies without a word is reported with the tail of its log.
//!
//! The daemon's side of this handshake is here too: [`close_inherited_descriptors`], which a
//! daemon calls first, and [`report_start_error`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mcli_protocol::Seconds;
use mcli_shared::lockfile;
use mcli_shared::paths::{self, PathError, ServerPaths};

use crate::connection::{ConnectError, Connection};

/// How long to wait for a new server's readiness line by default; `MCLI_START_TIMEOUT` (seconds)
/// overrides it.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a server could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime dir cannot be created, or is unsafe to use.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Connecting failed for another reason than no server listening (before or after the start).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A step of the start failed with an I/O error.
    #[error("cannot start the server: {step}: {source}")]
    Io {
        /// The step that failed.
        step: StartStep,
        /// The underlying error.
        source: io::Error,
    },
    /// Another starter held the start lock (`NAME.start.lock`) longer than the start timeout plus
    /// 5 seconds; it carries the start timeout and the lock's path.
    #[error("another client has been starting the server for over {0:?}; see {1}")]
    LockTimeout(Duration, PathBuf),
    /// The new server wrote no readiness line within the start timeout; it was killed.
    #[error("the server did not become ready within {timeout:?}{}", log_tail(.log))]
    NotReady {
        /// The start timeout that ran out.
        timeout: Duration,
        /// The server log, whose tail the message shows.
        log: PathBuf,
    },
    /// The new server exited (or closed its standard output) without a readiness line or a reason.
    #[error("the server exited before it was ready{}", log_tail(.log))]
    Failed {
        /// The server log, whose tail the message shows.
        log: PathBuf,
    },
    /// The server said why it could not start, on the readiness pipe.
    #[error("the server exited before it was ready: {reason} (its log: {})", .log.display())]
    Refused {
        /// The reason the server gave.
        reason: String,
        /// The server log.
        log: PathBuf,
    },
}

/// What starts the line a server that cannot start writes on the readiness pipe, instead of
/// the readiness line; the reason follows.
pub const START_ERROR_PREFIX: &str = "mcli-server: cannot start: ";

/// The most of a start error line that the starter reads.
const START_ERROR_MAX_BYTES: u64 = 16 * 1024;

/// The step of a start that failed, as the message names it.
#[derive(Debug)]
pub enum StartStep {
    /// Taking the start lock, `NAME.start.lock`.
    TakeLock,
    /// Opening (or rotating) the server log at this path.
    OpenLog(PathBuf),
    /// Making the runtime dir's path absolute, for the new server.
    ResolveRuntimeDir,
    /// Running the `mcli-server` program at this path.
    Spawn(PathBuf),
}

impl std::fmt::Display for StartStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartStep::TakeLock => f.write_str("taking the start lock"),
            StartStep::OpenLog(log) => write!(f, "opening the log {}", log.display()),
            StartStep::ResolveRuntimeDir => f.write_str("resolving the runtime dir"),
            StartStep::Spawn(program) => write!(f, "running {}", program.display()),
        }
    }
}

fn log_tail(log: &Path) -> String {
    match tail(log, 15) {
        Ok(lines) if !lines.is_empty() => format!("; the end of {}:\n{lines}", log.display()),
        Ok(_) => format!("; its log {} is empty", log.display()),
        Err(err) => format!("; its log {} cannot be read: {err}", log.display()),
    }
}

/// The last `count` lines of the file at `path` (at most the last 8 KiB of it), read as the
/// server's own files are (no symbolic link, no FIFO, no device that never ends).
pub fn tail(path: &Path, count: usize) -> io::Result<String> {
    const TAIL_BYTES: u64 = 8 * 1024;
    let mut file = paths::open_own_file(path, OpenOptions::new().read(true))?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(count)..].join("\n"))
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Starter {
    /// The `mcli-server` executable.
    pub program: PathBuf,
    /// Extra arguments for `mcli-server start --foreground` (e.g. `--config FILE`).
    pub extra_args: Vec<String>,
    /// The server is started on demand by a client (it then idles out after an hour by default).
    pub on_demand: bool,
    /// Where the server log goes.
    pub log: PathBuf,
    /// How long to wait for the readiness line ([`DEFAULT_START_TIMEOUT`] unless
    /// `MCLI_START_TIMEOUT` says otherwise); the start lock is waited for 5 seconds longer.
    pub timeout: Duration,
}

impl Starter {
    /// A starter that uses the `mcli-server` beside the running executable (else the one on
    /// PATH) and the standard log and timeout.
    pub fn from_env(paths: &ServerPaths) -> Self {
        let program = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("mcli-server")))
            .filter(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from("mcli-server"));
        let timeout = std::env::var("MCLI_START_TIMEOUT")
            .ok()
            .and_then(|s| Seconds::parse_positive(&s).ok())
            .map_or(DEFAULT_START_TIMEOUT, Seconds::duration);
        let log = paths::log_file(&paths::state_dir(paths::process_env), &paths.name);
        Starter { program, extra_args: Vec::new(), on_demand: true, log, timeout }
    }
}

/// A server that was started: its readiness line and pid.
#[derive(Debug, Clone)]
pub struct Started {
    /// The readiness line the server printed (`... listening on ...`), without its newline.
    pub line: String,
    /// The server's process id.
    pub pid: u32,
}

/// Connects to the server, starting one first when none is running. Returns the connection and,
/// when this call started the server, what it started.
pub fn connect_or_start(paths: &ServerPaths, starter: &Starter) -> Result<(Connection, Option<Started>), StartError> {
    match Connection::connect_server(paths) {
        Ok(conn) => return Ok((conn, None)),
        Err(ConnectError::NoServer { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    let started = start(paths, starter)?;
    Ok((Connection::connect_server(paths)?, started))
}

/// Starts a server unless one is running. `Ok(None)` means one was running (perhaps started by a
/// racing starter while this one waited for the start lock).
pub fn start(paths: &ServerPaths, starter: &Starter) -> Result<Option<Started>, StartError> {
    paths::ensure_runtime_dir(&paths.dir)?;
    let io_err = |step: StartStep| move |source| StartError::Io { step, source };
    let _start_lock = lockfile::lock_within(&paths.start_lock, starter.timeout + Duration::from_secs(5))
        .map_err(io_err(StartStep::TakeLock))?
        .ok_or_else(|| StartError::LockTimeout(starter.timeout, paths.start_lock.clone()))?;
    match Connection::connect_server(paths) {
        Ok(_) => return Ok(None),
        Err(ConnectError::NoServer { .. }) => {}
        Err(other) => return Err(other.into()),
    }

    spawn(paths, starter, &[]).map(Some)
}

/// Starts the successor of the running server, which hands it `listeners` (each a name and a
/// listening socket): they become descriptors 3 and up of the new server, announced with
/// `LISTEN_FDS` and `LISTEN_FDNAMES` as a service manager does. No start lock, no probe: the
/// caller is the server that answers.
pub fn start_successor(
    paths: &ServerPaths,
    starter: &Starter,
    listeners: &[(&str, std::os::fd::BorrowedFd<'_>)],
) -> Result<Started, StartError> {
    spawn(paths, starter, listeners)
}

/// Spawns `starter`'s server, detached, with `listeners` passed on, and waits for its readiness.
fn spawn(
    paths: &ServerPaths,
    starter: &Starter,
    listeners: &[(&str, std::os::fd::BorrowedFd<'_>)],
) -> Result<Started, StartError> {
    let io_err = |step: StartStep| move |source| StartError::Io { step, source };
    let log = open_log(&starter.log).map_err(io_err(StartStep::OpenLog(starter.log.clone())))?;
    let mut command = Command::new(&starter.program);
    command
        .args(["--socket-name", &paths.name, "start", "--foreground", "--notify-ready"])
        .args(&starter.extra_args)
        .args(starter.on_demand.then_some("--auto-started"))
        // A relative runtime dir would change meaning once the server leaves this directory.
        .env("MCLI_RUNTIME_DIR", std::path::absolute(&paths.dir).map_err(io_err(StartStep::ResolveRuntimeDir))?)
        // A server started from inside a command is not part of that command's process tree:
        // ending the command must not end the daemon.
        .env_remove(mcli_shared::tree::TAG_VAR)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if !listeners.is_empty() {
        let names: Vec<&str> = listeners.iter().map(|(name, _)| *name).collect();
        command.env("LISTEN_FDS", listeners.len().to_string()).env("LISTEN_FDNAMES", names.join(":"));
    }
    let passed: Vec<RawFd> = listeners.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, fcntl, dup2) run,
    // on descriptors the caller keeps open, and on a vector allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid().map_err(io::Error::from)?;
            pass_descriptors(&passed)
        });
    }
    let mut child = command.spawn().map_err(io_err(StartStep::Spawn(starter.program.clone())))?;
    wait_ready(&mut child, starter)
}

/// Puts `fds` at 3, 4, ... in a child between fork and exec, without close-on-exec. Each is
/// first copied above the targets, so that one already at a target number is not overwritten
/// before it is moved.
fn pass_descriptors(fds: &[RawFd]) -> io::Result<()> {
    use nix::libc;
    const MAX: usize = 8;
    const ABOVE: libc::c_int = 64;
    if fds.len() > MAX {
        return Err(io::Error::other("too many descriptors to pass"));
    }
    let mut moved = [0 as libc::c_int; MAX];
    for (slot, fd) in moved.iter_mut().zip(fds) {
        // SAFETY: fcntl and dup2 are async-signal-safe and only make new descriptors.
        *slot = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, ABOVE) };
        if *slot < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for (target, fd) in (3..).zip(&moved[..fds.len()]) {
        // SAFETY: as above; dup2 clears close-on-exec on the target.
        if unsafe { libc::dup2(*fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads the readiness line from the new server's standard output, within the timeout.
fn wait_ready(child: &mut Child, starter: &Starter) -> Result<Started, StartError> {
    let Some(stdout) = child.stdout.take() else {
        return Err(StartError::Failed { log: starter.log.clone() });
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout.take(START_ERROR_MAX_BYTES)).read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    match rx.recv_timeout(starter.timeout) {
        Ok(Ok(line)) if line.contains(" listening on ") => {
            Ok(Started { line: line.trim_end().to_owned(), pid: child.id() })
        }
        Ok(Ok(line)) if line.starts_with(START_ERROR_PREFIX) => {
            let _ = child.wait();
            let reason = line[START_ERROR_PREFIX.len()..].trim_end().to_owned();
            Err(StartError::Refused { reason, log: starter.log.clone() })
        }
        Ok(_) => {
            let _ = child.wait();
            Err(StartError::Failed { log: starter.log.clone() })
        }
        Err(_) => {
            // Leave nothing half-started behind.
            let _ = child.kill();
            let _ = child.wait();
            Err(StartError::NotReady { timeout: starter.timeout, log: starter.log.clone() })
        }
    }
}

/// Opens the server log for appending (creating its private directory), rotating it first when
/// it has grown large. A symbolic link, FIFO or another user's file in its place is refused.
fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() > paths::LOG_MAX_BYTES) {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        fs::rename(path, rotated)?;
    }
    paths::open_own_file(path, OpenOptions::new().append(true).create(true).mode(0o600))
}

/// Closes every descriptor this process inherited beyond standard input, output and error
/// (standard output is the readiness pipe of a server being started). A daemon calls it first
/// thing: a descriptor its starter's caller left open (as `3>&1` does in a shell) would
/// otherwise be held for the daemon's whole life, and by every command it runs, so that a pipe
/// never ends (`( mcli-client -q hello 3>&1 ) | cat`).
///
/// It must run before this process opens any descriptor of its own, while only the main thread
/// runs; `mcli-server` calls it before anything else of a serving subcommand.
pub fn close_inherited_descriptors() -> io::Result<()> {
    close_descriptors_from(3)
}

/// [`close_inherited_descriptors`], keeping those below `first` (descriptors 3 and up that a
/// service manager or a previous server handed over, which the caller has taken).
pub fn close_descriptors_from(first: u32) -> io::Result<()> {
    use nix::libc;
    const FIRST_INHERITED: libc::c_uint = 3;
    let first: libc::c_uint = first.max(FIRST_INHERITED);
    // SAFETY: close_range only closes descriptors; by this function's contract none of those
    // from 3 up belongs to anything in this process yet.
    if unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0 as libc::c_uint) } == 0 {
        return Ok(());
    }
    // A kernel before 5.9: close what /proc lists. The listing's own descriptor is closed by
    // the time the list is walked, so closing it again only fails with EBADF.
    let fds: Vec<libc::c_int> = fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| libc::c_uint::try_from(*fd).is_ok_and(|fd| fd >= first))
        .collect();
    for fd in fds {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Tells the starter waiting on standard output why this server cannot start, as one line in
/// place of the readiness line, so that the reason reaches the user even when the log cannot
/// be written (a full disk).
pub fn report_start_error(reason: &str) {
    let line = format!("{START_ERROR_PREFIX}{}\n", reason.replace('\n', " "));
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}
