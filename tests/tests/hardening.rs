//! Descriptors, files and peers, as an attack battery probed them: a server started on demand
//! keeps none of its caller's descriptors (nor do its commands); a socket that is not this
//! user's server is refused by the client, `stop` and `status`, and the server refuses a client
//! of another user; the server file is put back when deleted or replaced, and read safely; no
//! file of the runtime or state dir is opened through a symbolic link; and a server that cannot
//! start says why through its readiness pipe, even when its log cannot be written.
//!
//! The tests with another user need root (to make a process of uid 65534) and python3, as the
//! test suite has them in CI (scripts/test.sh installs python3); without them they fail and say
//! why, never pass unseen.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mcli_tests::{Run, TestEnv, WAIT, wait_until, wait_until_within};

/// The uid of `nobody`, the other user of these tests.
const NOBODY: u32 = 65534;

/// A Python listener on a Unix socket, for a process that is not the server. It binds as the
/// user who runs it, then (given a uid) becomes that user before it listens: the kernel gives
/// clients the credentials of the process at `listen`. It answers every connection with a
/// plausible reply and prints what it received, one line per connection.
const IMPOSTOR: &str = r#"
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
if len(sys.argv) > 2:
    uid = int(sys.argv[2])
    os.chown(path, uid, uid)
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        data = c.recv(65536)
    except OSError:
        data = b""
    print("got", repr(data), flush=True)
    try:
        c.sendall(b'{"jsonrpc":"2.0","id":1,"result":{"stdout":"IMPOSTOR OUTPUT","pid":1}}\n')
    except OSError:
        pass
    c.close()
"#;

/// A client as another user: connects to `argv[1]` as uid `argv[2]`, sends a request, and
/// prints the first line it gets back.
const OTHER_USER_CLIENT: &str = r#"
import os, socket, sys
uid = int(sys.argv[2])
os.setgroups([]); os.setgid(uid); os.setuid(uid)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"health"}\n')
except OSError:
    pass  # refused before the request was read
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode().strip(), flush=True)
"#;

/// Fails the test, saying why, when it cannot be another user here.
fn can_be_another_user(test: &str) -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test} needs root, to run a process as uid {NOBODY}: run the test suite as root (CI does)"
    );
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "{test} needs python3: scripts/test.sh installs it"
    );
    true
}

/// A running impostor, killed on drop.
struct Impostor {
    child: Child,
    /// The lines it prints, read on a thread of their own.
    lines: mpsc::Receiver<String>,
}

impl Impostor {
    /// Listens on `socket`, as uid `uid` if given, and waits until it does.
    fn listen(socket: &Path, uid: Option<u32>) -> Impostor {
        // python3 gets the test's own environment (a pyenv shim needs its HOME).
        let mut cmd = Command::new("python3");
        cmd.args(["-c", IMPOSTOR]).arg(socket).args(uid.map(|u| u.to_string()));
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // Whole lines only: a line cut short by the kill at the end is not a connection.
            let mut stdout = stdout;
            let mut line = String::new();
            while stdout.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
                let _ = tx.send(line.trim_end().to_owned());
                line.clear();
            }
        });
        let impostor = Impostor { child, lines };
        assert_eq!(impostor.lines.recv_timeout(WAIT).as_deref(), Ok("ready"), "the impostor listens");
        impostor
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends it, once it has heard `expected` connections (or waited [`WAIT`] for each) and then
    /// nothing more for a moment, and returns what it printed: one `got ...` line per
    /// connection. It serves one connection at a time, so the last ones may still wait in its
    /// backlog when the clients have exited.
    fn finish(mut self, expected: usize) -> Vec<String> {
        let mut heard = Vec::new();
        while heard.len() < expected {
            let Ok(line) = self.lines.recv_timeout(WAIT) else { break };
            heard.push(line);
        }
        // Then what else comes while it is still answering (a client may connect more than once).
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_millis(300)) {
            heard.push(line);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Anything more it printed: the reading thread ends at the end of its output.
        heard.extend(self.lines.iter());
        heard
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user's commands dir of `env`, with an executable `#!/bin/sh` script `name`.
fn script(env: &TestEnv, name: &str, body: &str) {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn state_file(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.state_home.join("mcli");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir.join(name)
}

// ---------------------------------------------------------------------------------------------
// Item 4: descriptors

#[test]
fn a_pipe_the_caller_left_open_ends_when_the_client_does() {
    let env = TestEnv::new();
    let client = env.bin("mcli-client");
    // The server this starts inherits fd 3, the pipe to `cat`: until it closes it, `cat` never
    // sees the end of its input.
    let pipeline = format!("( '{}' -q hello x 3>&1 ) | cat", client.display());
    let started = Instant::now();
    let run = Run::of(env.command("sh").args(["-c", &pipeline]));
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello x!\n");
    assert!(started.elapsed() < Duration::from_secs(15), "the pipeline took {:?}", started.elapsed());
    assert_eq!(env.server_pids().len(), 1, "the server runs on");
}

#[test]
fn a_command_sees_only_its_own_three_streams() {
    let env = TestEnv::new();
    script(&env, "lsfd", "exec ls -l /proc/self/fd\n");
    let client = env.bin("mcli-client");
    // The server is started by this very call, from a shell with two more descriptors open.
    let pipeline = format!("( '{}' -q lsfd 3>&1 4</dev/null ) | cat", client.display());
    let run = Run::of(env.command("sh").args(["-c", &pipeline]));
    run.expect_code(0);
    let fds: Vec<(u32, String)> = run
        .stdout
        .lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            Some((left.rsplit(' ').next()?.parse().ok()?, target.to_owned()))
        })
        .collect();
    // `ls` itself has the directory it lists open.
    let others: Vec<&(u32, String)> = fds.iter().filter(|(fd, target)| *fd > 2 && !target.ends_with("/fd")).collect();
    assert!(others.is_empty(), "the command inherited {others:?}; all of it:\n{}", run.stdout);
    assert_eq!(fds.iter().filter(|(fd, _)| *fd <= 2).count(), 3, "{}", run.stdout);
    assert_eq!(fds.len(), 4, "0-2 and the listing's own: {}", run.stdout);
}

// ---------------------------------------------------------------------------------------------
// Item 5: peers

#[test]
fn a_socket_of_another_uid_is_refused_by_the_client_stop_and_status() {
    if !can_be_another_user("a_socket_of_another_uid_is_refused_by_the_client_stop_and_status") {
        return;
    }
    let env = TestEnv::new();
    env.create_runtime_dir();
    let socket = env.socket("server");
    let mut impostor = Impostor::listen(&socket, Some(NOBODY));
    let named = format!("refusing the server on {}", socket.display());

    let run = env.client(&["hello"]);
    run.expect_code(69);
    assert!(run.stderr.contains(&named), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("runs as uid {NOBODY}, not as you (uid 0)")), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("(pid {})", impostor.pid())), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("`rm {}`", socket.display())), "says what to do: {}", run.stderr);
    assert!(!run.stdout.contains("IMPOSTOR"), "{}", run.stdout);

    for subcommand in ["stop", "status", "token", "start"] {
        let run = env.server(&[subcommand]);
        run.expect_code(1);
        assert!(run.stderr.contains(&named), "{subcommand}: {}", run.stderr);
        assert!(!run.stdout.contains("stopped"), "{subcommand}: {}", run.stdout);
    }
    assert!(impostor.alive(), "nothing stopped the impostor");
    assert!(env.server_pids().is_empty(), "no server was started past the impostor");
    let heard = impostor.finish(5);
    assert_eq!(heard.len(), 5, "one connection per call: {heard:?}");
    assert!(heard.iter().all(|l| l == "got b''"), "no request reached the impostor: {heard:?}");
}

#[test]
fn a_socket_of_this_uid_that_is_not_the_named_server_is_refused() {
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "this test needs python3: scripts/test.sh installs it"
    );
    let env = TestEnv::new();
    env.create_runtime_dir();
    // A server file that names another live process (this test) than the one on the socket.
    let server_file = env.runtime_dir.join("server.json");
    let me = std::process::id();
    let text = format!(
        r#"{{"pid": {me}, "version": "0", "protocol": 1, "socket": "x", "tcp": null, "http": null, "token": "t"}}"#
    );
    std::fs::write(&server_file, text).unwrap();
    let socket = env.socket("server");
    let impostor = Impostor::listen(&socket, None);

    let run = env.client(&["hello"]);
    run.expect_code(69);
    let want = format!(
        "refusing the server on {}: the process listening there (pid {}) is not the server that owns the name (pid {me} in {})",
        socket.display(),
        impostor.pid(),
        server_file.display()
    );
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    let run = env.server(&["stop"]);
    run.expect_code(1);
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    let heard = impostor.finish(2);
    assert!(heard.len() >= 2 && heard.iter().all(|l| l == "got b''"), "no request reached it: {heard:?}");
}

#[test]
fn the_server_refuses_a_client_of_another_uid() {
    if !can_be_another_user("the_server_refuses_a_client_of_another_uid") {
        return;
    }
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    let socket = env.socket("server");
    // Let uid 65534 reach the socket, as a careless chmod would: a hard link in an open dir,
    // and the socket's mode opened (it is the same inode).
    let open_dir = env.root.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(env.root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let link = open_dir.join("s.sock");
    std::fs::hard_link(&socket, &link).unwrap();
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o666)).unwrap();

    let mut cmd = Command::new("python3");
    cmd.args(["-c", OTHER_USER_CLIENT]).arg(&link).arg(NOBODY.to_string());
    let run = Run::of(&mut cmd);
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    run.expect_code(0);
    let reply: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(reply["error"]["code"], -32003, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    let want = format!(
        "the mcli-server on {} serves only its own user (uid 0); a process of uid {NOBODY} may not connect",
        socket.display()
    );
    assert_eq!(message, want);
    assert!(env.log("server").contains("refused a connection"), "logged: {}", env.log("server"));
    // The server's own user is served as before.
    env.client(&["hello", "again"]).expect_code(0);
}

// ---------------------------------------------------------------------------------------------
// Item 6: the server file

#[test]
fn a_deleted_or_replaced_server_file_is_put_back_within_seconds() {
    use std::os::unix::fs::FileTypeExt;
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    let file = env.runtime_dir.join("server.json");
    let pid = env.server_file("server")["pid"].clone();
    let put_back = |what: &str| {
        // The guard checks every second; a loaded machine gets some slack.
        wait_until_within(&format!("the server file is put back after {what}"), Duration::from_secs(10), || {
            std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file())
        });
        assert_eq!(env.server_file("server")["pid"], pid);
        let token = env.server(&["token"]);
        token.expect_code(0);
        assert_eq!(token.stdout.trim().len(), 64, "{}", token.stdout);
    };

    std::fs::remove_file(&file).unwrap();
    put_back("rm");

    std::fs::remove_file(&file).unwrap();
    nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Whether the FIFO is still there or already replaced, `token` does not block on it.
    let token = env.server(&["token"]);
    if std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_fifo()) && token.code != Some(0) {
        assert!(token.stderr.contains("it is a FIFO, not a regular file"), "{}", token.stderr);
    }
    put_back("a FIFO put in its place");

    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
    put_back("a symbolic link to /dev/zero put in its place");
    assert!(env.log("server").contains("the server file was removed or replaced; writing it anew"));
}

#[test]
fn a_server_file_that_is_not_a_regular_file_is_refused_at_once() {
    let env = TestEnv::new();
    let fifo = env.root.path().join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let zero = env.root.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let big = env.root.path().join("big.json");
    std::fs::write(&big, vec![b' '; 64 * 1024 + 1]).unwrap();
    for (file, says) in [
        (&fifo, "it is a FIFO, not a regular file"),
        (&zero, "it is a symbolic link, which mcli does not follow"),
        (&big, "it is larger than 65536 bytes"),
    ] {
        let run = env.client(&["-f", file.to_str().unwrap(), "hello"]);
        run.expect_code(69);
        let want = format!("cannot read server file {}: {says}; remove it (`rm {}`)", file.display(), file.display());
        assert!(run.stderr.contains(&want), "{}", run.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// Item 7: symbolic links

#[test]
fn a_log_symlink_is_refused_and_its_target_untouched() {
    let env = TestEnv::new();
    let log = state_file(&env, "server.log");
    let target = env.root.path().join("precious");
    std::fs::write(&target, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&target, &log).unwrap();
    let run = env.client(&["hello"]);
    run.expect_code(69);
    let want = format!(
        "cannot start the server: opening the log {}: it is a symbolic link, which mcli does not follow; remove it (`rm {}`)",
        log.display(),
        log.display()
    );
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    assert!(env.server_pids().is_empty());
}

#[test]
fn dangling_lock_symlinks_are_refused_and_create_nothing() {
    let env = TestEnv::new();
    env.create_runtime_dir();
    for (name, says) in [
        ("server.start.lock", "cannot start the server: taking the start lock: it is a symbolic link"),
        ("server.lock", "the server exited before it was ready: cannot lock"),
    ] {
        let link = env.runtime_dir.join(name);
        let target = env.root.path().join(format!("{name}-target"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let run = env.client(&["hello"]);
        run.expect_code(69);
        assert!(run.stderr.contains(says), "{name}: {}", run.stderr);
        let fix = format!("it is a symbolic link, which mcli does not follow; remove it (`rm {}`)", link.display());
        assert!(run.stderr.contains(&fix), "{name}: {}", run.stderr);
        assert!(!target.exists(), "{name}: the link's target was created");
        std::fs::remove_file(&link).unwrap();
    }
    assert!(env.server_pids().is_empty());
    env.client(&["-q", "hello"]).expect_code(0);
}

#[test]
fn a_history_symlink_is_not_followed_and_the_server_serves_unrecorded() {
    let env = TestEnv::new();
    let history = state_file(&env, "server-history.sqlite3");
    let target = env.root.path().join("notes.txt");
    std::fs::write(&target, "not a database\n").unwrap();
    std::os::unix::fs::symlink(&target, &history).unwrap();
    let want = format!(
        "cannot create the history database {}: it is a symbolic link, which mcli does not follow; remove it (`rm {}`)",
        history.display(),
        history.display()
    );
    // As with a full disk: the server serves, says why in its log, and records nothing.
    let run = env.client(&["-q", "hello"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello World!\n");
    let log = env.log("server");
    assert!(log.contains(&want) && log.contains("executions are answered but not recorded"), "{log}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "not a database\n");
    assert!(std::fs::symlink_metadata(&history).unwrap().file_type().is_symlink(), "left as it was");
}

// ---------------------------------------------------------------------------------------------
// Item 8: start-up errors through the readiness pipe

/// Runs `program ARGS` from a shell where no file may grow past 0 bytes, as on a full disk: the
/// server's log stays empty. The signal that would end a process writing past the limit is
/// ignored, as a full disk sends none.
fn run_with_unwritable_files(env: &TestEnv, program: &str, args: &str) -> Run {
    let line = format!("trap '' XFSZ; ulimit -f 0; exec '{}' {args}", env.bin(program).display());
    Run::of(env.command("sh").args(["-c", &line]))
}

#[test]
fn a_start_error_reaches_the_client_when_the_log_cannot_be_written() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\nmax_concurrent_commands = \"many\"\n");
    let run = run_with_unwritable_files(&env, "mcli-client", "hello");
    run.expect_code(69);
    let want = "the server exited before it was ready: config file ";
    assert!(run.stderr.contains(want), "{}", run.stderr);
    assert!(run.stderr.contains("`api_daemon.max_concurrent_commands` must be a whole number"), "{}", run.stderr);
    assert!(!run.stderr.contains("is empty"), "{}", run.stderr);
    assert_eq!(env.log("server"), "", "the log could not be written");
    assert!(env.server_pids().is_empty());
}

#[test]
fn a_start_error_reaches_mcli_server_start_when_the_log_cannot_be_written() {
    let mut env = TestEnv::new();
    // `start` checks the config itself; what fails here is the daemon's: its TCP port is taken.
    env.use_config("[api_daemon]\nenable_command_history = false\n");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let run = run_with_unwritable_files(&env, "mcli-server", &format!("start --tcp {addr}"));
    run.expect_code(1);
    let want = format!("the server exited before it was ready: cannot listen on TCP address {addr}: ");
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    assert!(!run.stderr.contains("is empty"), "{}", run.stderr);
    assert_eq!(env.log("server"), "", "the log could not be written");
    assert!(env.server_pids().is_empty());
}

#[test]
fn a_server_started_in_the_background_logs_and_serves_as_before() {
    // The safe opening of the log and lock files changes nothing for a well-kept state dir.
    let env = TestEnv::new();
    let run = env.server(&["start"]);
    run.expect_code(0);
    assert!(run.stdout.contains(" listening on "), "{}", run.stdout);
    env.client(&["-q", "hello"]).expect_code(0);
    wait_until("the log has the readiness line", || env.log("server").contains(" listening on "));
    let stop = env.server(&["stop"]);
    stop.expect_code(0);
    assert!(stop.stdout.contains("stopped the server"), "{}", stop.stdout);
    assert!(env.server_pids().is_empty());
}
