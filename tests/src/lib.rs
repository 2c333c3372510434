//! The harness of the end-to-end tests: each test gets a fresh directory under /tmp with its own
//! runtime, config, state and home directories, runs the real `mcli-server` and `mcli-client`
//! binaries with only those in their environment, waits on readiness (never a fixed sleep), and
//! kills every server it started when it ends, even on panic.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The bound on every wait in the tests: generous, for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// The directory holding the binaries under test: the one above the test executable's `deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    for name in ["mcli-server", "mcli-client"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: build the binaries first (`cargo build --workspace`, as scripts/test.sh does)",
            dir.join(name).display()
        );
    }
    dir
}

pub struct TestEnv {
    pub root: tempfile::TempDir,
    pub runtime_dir: PathBuf,
    pub config_home: PathBuf,
    pub state_home: PathBuf,
    pub home: PathBuf,
    bins: PathBuf,
    /// Extra variables for every process started.
    extra_env: Vec<(OsString, OsString)>,
    /// Children started in the foreground, killed on drop.
    children: Vec<Child>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> Self {
        // Short paths: a socket path must fit in 108 bytes.
        let root = tempfile::Builder::new().prefix("mt").tempdir_in("/tmp").expect("temp dir");
        let sub = |name: &str| {
            let path = root.path().join(name);
            std::fs::create_dir_all(&path).expect("create dir");
            path
        };
        let (config_home, state_home, home) = (sub("cfg"), sub("state"), sub("home"));
        TestEnv {
            runtime_dir: root.path().join("rt"),
            config_home,
            state_home,
            home,
            root,
            bins: bin_dir(),
            extra_env: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Sets a variable for every process this environment starts from now on.
    pub fn set_env(&mut self, key: &str, value: impl Into<OsString>) {
        self.extra_env.push((key.into(), value.into()));
    }

    /// Takes back what [`TestEnv::set_env`] set for `key`.
    pub fn remove_env(&mut self, key: &str) {
        self.extra_env.retain(|(k, _)| k != key);
    }

    /// Writes `text` as a config file and points `MCLI_CONFIG` at it for every process from now on.
    pub fn use_config(&mut self, text: &str) -> PathBuf {
        let file = self.root.path().join("c.toml");
        std::fs::write(&file, text).expect("write the config file");
        self.set_env("MCLI_CONFIG", &file);
        file
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }

    /// A command for `program` with this environment and nothing else of the test's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("MCLI_RUNTIME_DIR", &self.runtime_dir)
            .env("XDG_RUNTIME_DIR", self.root.path().join("xdg-rt"))
            .env("XDG_CONFIG_HOME", &self.config_home)
            .env("XDG_STATE_HOME", &self.state_home)
            .current_dir(self.root.path())
            .stdin(Stdio::null());
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
        cmd
    }

    pub fn client_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(self.bin("mcli-client"));
        cmd.args(args);
        cmd
    }

    pub fn server_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(self.bin("mcli-server"));
        cmd.args(args);
        cmd
    }

    /// Runs `mcli-client ARGS` to completion.
    pub fn client(&self, args: &[&str]) -> Run {
        Run::of(&mut self.client_cmd(args))
    }

    /// Runs `mcli-server ARGS` to completion.
    pub fn server(&self, args: &[&str]) -> Run {
        Run::of(&mut self.server_cmd(args))
    }

    /// Starts `mcli-server start --foreground` as a child and waits for its readiness line.
    pub fn foreground_server(&mut self, args: &[&str]) -> (u32, String) {
        let mut cmd = self.server_cmd(&["start", "--foreground"]);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mcli-server");
        let stdout = child.stdout.take().expect("stdout");
        let line = read_line_within(stdout, WAIT).expect("readiness line from the foreground server");
        let pid = child.id();
        self.children.push(child);
        (pid, line)
    }

    /// Takes back a child started by [`foreground_server`], to wait on it.
    pub fn take_child(&mut self, pid: u32) -> Child {
        let at = self.children.iter().position(|c| c.id() == pid).expect("child started here");
        self.children.remove(at)
    }

    /// Creates the runtime dir as the binaries would (mode 0700), for tests that put something
    /// in it before any server runs.
    pub fn create_runtime_dir(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.runtime_dir).expect("create runtime dir");
        std::fs::set_permissions(&self.runtime_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    }

    /// `mcli-server status --json`, parsed; `Value::Null` while no server answers (a client may
    /// still be starting one), so that a waiting test asks again instead of failing.
    pub fn status_json(&self) -> Value {
        serde_json::from_str(&self.server(&["status", "--json"]).stdout).unwrap_or(Value::Null)
    }

    /// [`wait_for_active`] through `mcli-server status --json`: the way to wait for tests that
    /// drive the server with the command line.
    pub fn wait_for_active(&self, want: Active) -> Value {
        wait_for_active(want, || self.status_json())
    }

    pub fn socket(&self, name: &str) -> PathBuf {
        self.runtime_dir.join(format!("{name}.sock"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state_home.join("mcli").join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The server file of server `name`, parsed.
    pub fn server_file(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.runtime_dir.join(format!("{name}.json"))).expect("server file");
        serde_json::from_str(&text).expect("server file is JSON")
    }

    /// The pids of the live `mcli-server` processes that use this environment's runtime dir.
    pub fn server_pids(&self) -> Vec<u32> {
        let needle = {
            let mut n = b"MCLI_RUNTIME_DIR=".to_vec();
            n.extend_from_slice(self.runtime_dir.as_os_str().as_encoded_bytes());
            n.push(0);
            n
        };
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else { continue };
            // A binary rebuilt while its server runs shows as "mcli-server (deleted)".
            let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.strip_suffix(" (deleted)").unwrap_or(name) != "mcli-server" {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
            let mut with_nul = vec![0u8];
            with_nul.extend_from_slice(&environ);
            if with_nul.windows(needle.len() + 1).any(|w| w[0] == 0 && w[1..] == needle[..]) && !is_zombie(pid) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids
    }

    /// Sends one raw text on a new connection to server `name` and returns the replies it gets
    /// until it has `count` of them (NDJSON framing).
    pub fn raw_lines(&self, name: &str, text: &str, count: usize) -> Vec<Value> {
        let mut conn = RawConn::connect(&self.socket(name));
        conn.send(text.as_bytes());
        (0..count).map(|_| conn.read_json_line()).collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in self.server_pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Whether process `pid` has exited (gone, or a zombie: its files are closed either way).
pub fn process_gone(pid: u32) -> bool {
    is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(true)
}

/// Reads one line from `source`, giving up after `wait`.
pub fn read_line_within(source: impl Read + Send + 'static, wait: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(source).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(wait).ok().filter(|l| !l.is_empty())
}

/// Waits until `done` holds, checking every few milliseconds, for at most [`WAIT`]. For state
/// that has no readiness signal of its own, such as a process having exited.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_until_within(what, WAIT, done);
}

/// [`wait_until`] for something that takes longer than [`WAIT`] by nature.
pub fn wait_until_within(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a test waits to see in the `active_commands` of a server's status.
#[derive(Clone, Copy, Debug)]
pub enum Active<'a> {
    /// At least one command is running.
    Any,
    /// A command of this name is running (among others, maybe).
    Named(&'a str),
    /// Exactly this many commands are running; `Count(0)` waits until the server is idle.
    Count(usize),
}

impl Active<'_> {
    fn holds(self, active: &[Value]) -> bool {
        match self {
            Active::Any => !active.is_empty(),
            Active::Named(command) => active.iter().any(|c| c["command"] == command),
            Active::Count(count) => active.len() == count,
        }
    }
}

impl std::fmt::Display for Active<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Active::Any => write!(f, "a command is running"),
            Active::Named(command) => write!(f, "`{command}` is running"),
            Active::Count(count) => write!(f, "{count} commands are running"),
        }
    }
}

/// Asks `status` for the server's status until its `active_commands` show what `want` says, for
/// at most [`WAIT`], and returns that status. `status` fetches it over whatever the test talks to
/// the server with (the command line, a raw connection, a stdio session, HTTP); a status without
/// `active_commands` (say `Value::Null` while no server answers yet) counts as not yet.
pub fn wait_for_active(want: Active, status: impl FnMut() -> Value) -> Value {
    wait_for_active_within(WAIT, want, status)
}

/// [`wait_for_active`] for a change that takes longer than [`WAIT`] by nature.
pub fn wait_for_active_within(limit: Duration, want: Active, mut status: impl FnMut() -> Value) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let last = status();
        if last["active_commands"].as_array().is_some_and(|active| want.holds(active)) {
            return last;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {want}; the last status: {last}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A finished process: its status and output as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(cmd: &mut Command) -> Run {
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        Run::wait(child)
    }

    /// Waits for a child started with piped stdout and stderr, for at most [`WAIT`].
    pub fn wait(child: Child) -> Run {
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output: Output = match rx.recv_timeout(WAIT) {
            Ok(output) => output.expect("wait for child"),
            Err(_) => {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                panic!("process {pid} did not finish within {WAIT:?}");
            }
        };
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts the exit status, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit status; stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// A raw connection to a server socket, for protocol-level tests.
pub struct RawConn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl RawConn {
    pub fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        RawConn { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Reads one newline-framed JSON reply.
    pub fn read_json_line(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read from server");
        assert!(!line.is_empty(), "server closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line:?}"))
    }

    /// Reads one `Content-Length`-framed JSON reply.
    pub fn read_json_framed(&mut self) -> Value {
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read header");
            assert!(!line.is_empty(), "server closed the connection");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(value) = line.strip_prefix("Content-Length: ") {
                length = Some(value.parse::<usize>().expect("length"));
            }
        }
        let mut body = vec![0u8; length.expect("Content-Length header")];
        self.reader.read_exact(&mut body).expect("read body");
        serde_json::from_slice(&body).expect("body is JSON")
    }

    /// True when the server has closed the connection (reads end of file).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}
