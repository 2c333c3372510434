//! The command gets the client's terminal and streams: over the local socket the client hands
//! its stdin, stdout and stderr to the server (SCM_RIGHTS) and the command uses them directly;
//! the terminal's signals are forwarded to the command's process group; `-a local` inherits.
//! Terminal cases run the client under a pseudo-terminal from Python's `pty` module.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use mcli_tests::{RawConn, Run, TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Runs the rest of argv on a new pseudo-terminal of `rows` x `cols` (its controlling terminal),
/// and copies what it writes there to stdout; exits with its status.
const ON_PTY: &str = r#"
import fcntl, os, select, struct, subprocess, sys, termios, time
rows, cols = int(sys.argv[1]), int(sys.argv[2])
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
before = termios.tcgetattr(slave)
def ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
child = subprocess.Popen(sys.argv[3:], stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=ctty)
# Once the command says `ready`: PTY_RESIZE="ROWS COLS" resizes the terminal, PTY_TYPE is typed.
resize, typed = os.environ.get("PTY_RESIZE"), os.environ.get("PTY_TYPE")
out, acted, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    ready, _, _ = select.select([master], [], [], 0.1)
    if ready:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        out += data
    elif child.poll() is not None:
        # What the command wrote last may reach the master side a moment after it exited.
        more, _, _ = select.select([master], [], [], 1.0)
        if not more:
            break
    if not acted and b"ready" in out:
        acted = True
        if resize:
            r, c = map(int, resize.split())
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", r, c, 0, 0))
        if typed:
            os.write(master, typed.encode())
status = child.wait()
sys.stdout.write(out.decode(errors="replace").replace("\r\n", "\n"))
print("terminal restored" if termios.tcgetattr(slave) == before else "terminal left changed")
sys.exit(status)
"#;

fn script(env: &TestEnv, name: &str, body: &str) {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `env`'s command line run on a pseudo-terminal of 33 rows and 99 columns.
fn on_pty(env: &TestEnv, program: &std::path::Path, args: &[&str]) -> Run {
    let mut cmd = env.command("python3");
    cmd.args(["-c", ON_PTY, "33", "99"]).arg(program).args(args);
    let run = Run::of(&mut cmd);
    assert!(!run.stderr.contains("No such file"), "python3 is needed (scripts/test.sh installs it): {run:?}");
    run
}

const TTY_CHECK: &str = r#"if [ -t 0 ] && [ -t 1 ]; then echo "tty yes $(stty size)"; else echo "tty no"; fi"#;

#[test]
fn a_command_sees_the_clients_terminal_and_its_size() {
    let env = TestEnv::new();
    script(&env, "tty", TTY_CHECK);
    let run = on_pty(&env, &env.bin("mcli-client"), &["-q", "tty"]);
    run.expect_code(0);
    assert!(run.stdout.contains("tty yes 33 99"), "{run:?}");
}

#[test]
fn no_pass_streams_streams_through_the_server_as_before() {
    let env = TestEnv::new();
    script(&env, "tty", TTY_CHECK);
    let run = on_pty(&env, &env.bin("mcli-client"), &["-q", "--no-pass-streams", "tty"]);
    assert!(run.stdout.contains("tty no"), "{run:?}");
    let run = Run::of(env.client_cmd(&["tty"]).env("MCLI_PASS_STREAMS", "0"));
    assert_eq!(run.stdout, "tty no\n");
}

#[test]
fn local_mode_commands_inherit_the_terminal() {
    let env = TestEnv::new();
    script(&env, "tty", TTY_CHECK);
    let mut cmd = env.command("python3");
    cmd.args(["-c", ON_PTY, "33", "99"]).arg(env.bin("mcli-client")).arg("tty").env("MCLI_DAEMON_ROUTING", "0");
    let run = Run::of(&mut cmd);
    assert!(run.stdout.contains("tty yes 33 99"), "{run:?}");
}

#[test]
fn local_mode_commands_read_the_terminal_and_stop_and_resume_with_the_client() {
    let env = TestEnv::new();
    script(&env, "ask", "echo ready; read line; echo \"got $line\"");
    script(&env, "pausable", "echo ready; sleep 0.3; echo done");
    let on_pty = |line: &str, typed: &str| {
        let mut cmd = env.command("python3");
        cmd.args(["-c", ON_PTY, "33", "99", "bash", "-c", line, "job"]).arg(env.bin("mcli-client"));
        Run::of(cmd.env("MCLI_DAEMON_ROUTING", "0").env("PTY_TYPE", typed))
    };
    // Reading the terminal: the command is in the terminal's foreground job, not stopped by
    // SIGTTIN.
    let run = on_pty(r#""$1" ask"#, "hello\r");
    run.expect_code(0);
    assert!(run.stdout.contains("got hello"), "{run:?}");
    // Ctrl-Z stops the client and the command together, and the shell's `fg` resumes both.
    // The shell runs with job control (`set -m`), as an interactive one does.
    let run = on_pty(r#"set -m; "$1" pausable; echo "[job stopped]"; fg"#, "\u{1a}");
    run.expect_code(0);
    let (stopped, done) = (run.stdout.find("[job stopped]"), run.stdout.find("done"));
    assert!(stopped.is_some() && stopped < done, "stopped before it was done: {run:?}");
}

#[test]
fn output_to_a_file_is_written_by_the_command_itself() {
    let env = TestEnv::new();
    // 8 MiB, and the command says what its stdout is: the file itself, not a pipe.
    script(&env, "big", "out=$(readlink /proc/$$/fd/1); head -c 8388608 /dev/zero; echo \"$out\" >&2");
    let file = env.root.path().join("out.bin");
    let out = std::fs::File::create(&file).unwrap();
    let child = env.client_cmd(&["-q", "big"]).stdout(out).stderr(Stdio::piped()).spawn().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 8 * 1024 * 1024);
    assert_eq!(stderr.trim(), file.display().to_string(), "the command's stdout is the file");
}

#[test]
fn a_closed_pipe_ends_the_command_with_sigpipe() {
    let env = TestEnv::new();
    script(&env, "yes1", "while :; do echo y; done");
    let line = format!("{} -q yes1 | head -1; echo \"rc=${{PIPESTATUS[0]}}\"", env.bin("mcli-client").display());
    let run = Run::of(env.command("bash").args(["-c", &line]));
    assert_eq!(run.stdout, "y\nrc=141\n", "{run:?}");
}

#[test]
fn the_command_reads_the_clients_stdin_directly() {
    let env = TestEnv::new();
    script(&env, "upper", "tr a-z A-Z; [ -p /proc/self/fd/0 ] && echo piped");
    let mut child = env.client_cmd(&["-q", "upper"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"hello\n").unwrap();
    let run = Run::wait(child);
    run.expect_code(0);
    assert_eq!(run.stdout, "HELLO\npiped\n");
}

/// Starts `name` through the client with its stdout piped; returns the client and its output's
/// reader, after the command said `ready`.
fn start(env: &TestEnv, name: &str) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = env.client_cmd(&["-q", name]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, out)
}

fn next_line(out: &mut BufReader<std::process::ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line
}

#[test]
fn window_changes_reach_the_command() {
    let env = TestEnv::new();
    script(
        &env,
        "winch",
        "trap 'echo winch' WINCH; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
    );
    let (mut child, mut out) = start(&env, "winch");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGWINCH).unwrap();
    assert_eq!(next_line(&mut out), "winch\n");
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn hangup_and_quit_are_forwarded() {
    let env = TestEnv::new();
    script(&env, "hup", "trap 'echo hup; exit 3' HUP; echo ready; while :; do sleep 0.1; done");
    script(&env, "quit", "echo ready; exec sleep 300");
    let (child, mut out) = start(&env, "hup");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP).unwrap();
    assert_eq!(next_line(&mut out), "hup\n");
    let run = Run::wait(child);
    assert_eq!(run.code, Some(3), "{run:?}");

    let (child, _out) = start(&env, "quit");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGQUIT).unwrap();
    let run = Run::wait(child);
    assert_eq!(run.code, Some(128 + 3), "the command ended by SIGQUIT: {run:?}");
}

/// The state letter of process `pid` (`S`, `T`, ...).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?')
}

/// Whether the job of `pid` is stopped: the process itself, or (while a `vfork` of it has not
/// exec'd yet, which keeps the parent in `D` until the child goes on) its child.
fn job_stopped(pid: u32) -> bool {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    state(pid) == 'T' || children.split_whitespace().filter_map(|c| c.parse().ok()).any(|c| state(c) == 'T')
}

#[test]
fn ctrl_z_stops_the_command_and_the_client_and_fg_resumes_both() {
    let mut env = TestEnv::new();
    env.set_env("RUST_LOG", "mcli_server=debug");
    let (pidfile, go) = (env.root.path().join("pid"), env.root.path().join("go"));
    // The command waits for the test's word, so it cannot end before it has been stopped.
    let body = format!(
        "echo $$ > {}; echo ready; while [ ! -e {} ]; do sleep 0.1; done; echo done",
        pidfile.display(),
        go.display()
    );
    script(&env, "job", &body);
    let (child, mut out) = start(&env, "job");
    let command: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let client = Pid::from_raw(child.id() as i32);
    kill(client, Signal::SIGTSTP).unwrap();
    let stopped = std::time::Instant::now();
    while !job_stopped(command) {
        let log = env.log("server");
        let forwarded: Vec<&str> = log.lines().filter(|l| l.contains("signal")).collect();
        assert!(stopped.elapsed() < std::time::Duration::from_secs(20), "the command was not stopped: {forwarded:#?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    wait_until("the client is stopped", || state(child.id()) == 'T');
    kill(client, Signal::SIGCONT).unwrap();
    wait_until("the command runs again", || !job_stopped(command));
    std::fs::write(&go, "").unwrap();
    assert_eq!(next_line(&mut out), "done\n");
    Run::wait(child).expect_code(0);
}

#[test]
fn signal_errors_say_what_is_wrong() {
    let env = TestEnv::new();
    env.client(&["hello"]).expect_code(0);
    let mut conn = RawConn::connect(&env.socket("server"));
    conn.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"signal\",\"params\":{\"request_id\":99,\"signal\":\"WINCH\"}}\n",
    );
    let reply = conn.read_json_line();
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no `execute` request 99 runs on this connection"), "{reply}");
    conn.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"signal\",\"params\":{\"request_id\":1,\"signal\":\"KILL\"}}\n",
    );
    let reply = conn.read_json_line();
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("signal `KILL` may not be forwarded; one of INT, QUIT"), "{reply}");
}

#[test]
fn passed_streams_without_descriptors_are_refused() {
    let env = TestEnv::new();
    env.client(&["hello"]).expect_code(0);
    let mut conn = RawConn::connect(&env.socket("server"));
    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"execute\",\"params\":{\"command\":\"hello\",\"streams\":\"passed\"}}\n");
    let reply = conn.read_json_line();
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no descriptors came with this request on the socket transport"), "{reply}");
}

#[test]
fn too_many_descriptors_are_closed_and_reported() {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    use std::os::fd::AsFd;
    let env = TestEnv::new();
    env.client(&["hello"]).expect_code(0);
    let stream = std::os::unix::net::UnixStream::connect(env.socket("server")).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let fds = [null.as_fd(); 8];
    // 4 messages of 8 descriptors, none asked for by a request: 32 over the bound of 24.
    for _ in 0..4 {
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        sendmsg(&stream, &[std::io::IoSlice::new(b" ")], &mut control, SendFlags::empty()).unwrap();
    }
    std::io::Write::write_all(&mut &stream, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\"}\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(
        line.contains(
            "too many descriptors passed on this connection: at most 24 wait for their requests; 8 were closed"
        ),
        "{line}"
    );
}

/// A server with a TCP listener, and the path of its server file.
fn tcp_server(env: &TestEnv) -> String {
    env.server(&["start", "--tcp", "127.0.0.1:0"]).expect_code(0);
    env.runtime_dir.join("server.json").display().to_string()
}

#[test]
fn tty_over_tcp_gives_the_command_a_terminal_of_the_clients_size() {
    let env = TestEnv::new();
    script(&env, "tty", TTY_CHECK);
    let file = tcp_server(&env);
    let run = on_pty(&env, &env.bin("mcli-client"), &["-q", "-f", &file, "--tty", "tty"]);
    run.expect_code(0);
    assert!(run.stdout.contains("tty yes 33 99"), "{run:?}");
    assert!(run.stdout.contains("terminal restored"), "raw mode is undone: {run:?}");
}

#[test]
fn tty_over_tcp_follows_window_changes_and_takes_keys() {
    let env = TestEnv::new();
    script(&env, "resize", "trap 'echo \"size $(stty size)\"; exit 0' WINCH; echo ready; while :; do sleep 0.1; done");
    script(&env, "ask", "echo ready; read line; echo \"got $line\"");
    let file = tcp_server(&env);
    let mut cmd = env.command("python3");
    cmd.args(["-c", ON_PTY, "33", "99"]).arg(env.bin("mcli-client")).args(["-q", "-f", &file, "--tty", "resize"]);
    let run = Run::of(cmd.env("PTY_RESIZE", "40 120"));
    run.expect_code(0);
    assert!(run.stdout.contains("size 40 120"), "{run:?}");

    let mut cmd = env.command("python3");
    cmd.args(["-c", ON_PTY, "33", "99"]).arg(env.bin("mcli-client")).args(["-q", "-f", &file, "--tty", "ask"]);
    let run = Run::of(cmd.env("PTY_TYPE", "hello\r"));
    run.expect_code(0);
    assert!(run.stdout.contains("got hello"), "{run:?}");
    assert!(run.stdout.contains("terminal restored"), "{run:?}");
}

#[test]
fn tty_without_a_terminal_is_a_usage_error() {
    let env = TestEnv::new();
    let file = tcp_server(&env);
    let run = Run::of(env.client_cmd(&["-f", &file, "--tty", "hello"]).stdin(Stdio::null()));
    run.expect_code(2);
    assert!(run.stderr.contains("--tty needs a terminal on standard input"), "{run:?}");
}

#[test]
fn tty_and_passed_streams_together_are_refused() {
    let env = TestEnv::new();
    script(&env, "tty", TTY_CHECK);
    env.client(&["hello"]).expect_code(0);
    let mut conn = RawConn::connect(&env.socket("server"));
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"execute","params":{"command":"tty","streams":"passed","tty":{"rows":5,"cols":5}}}"#;
    conn.send(format!("{request}\n").as_bytes());
    let reply = conn.read_json_line();
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("give `tty` or `streams: \"passed\"`, not both"), "{reply}");
}

#[test]
fn python_is_available_for_these_tests() {
    let found = Command::new("python3").arg("-c").arg("import pty").status();
    assert!(found.is_ok_and(|s| s.success()), "python3 is needed for the terminal tests (scripts/test.sh installs it)");
}

/// A cached manifest `big` (its output goes through the server, which writes it to the passed
/// pipe itself) that writes 1 MiB, then waits; `extra` goes into its manifest.
fn big_cached_command(env: &TestEnv, extra: &str) {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let run = r#"run = ["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; exec sleep 300"]"#;
    std::fs::write(dir.join("big.toml"), format!("{run}\n{extra}[cache]\nttl = 60\n")).unwrap();
}

/// Runs `big` with its stdout a pipe that nobody reads, as a pager waiting for a key: the
/// server's write blocks. `end` ends the call (Ctrl-C, or nothing while the time limit runs
/// out), which must end as a direct run would, with `code`, and the write with it.
fn end_a_call_writing_to_a_pipe_nobody_reads(env: &TestEnv, end: impl FnOnce(u32), code: i32) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let client = env.client_cmd(&["-q", "big"]).stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
    env.wait_for_active(mcli_tests::Active::Any);
    end(client.id());
    let run = Run::wait(client);
    assert_eq!(run.code, Some(code), "{run:?}");
    // The server gave the write up: the pipe ends (its last writer closed) short of the output.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut read = Vec::new();
        let _ = tx.send(std::io::Read::read_to_end(&mut { reader }, &mut read).map(|_| read));
    });
    let read = rx.recv_timeout(mcli_tests::WAIT).expect("the pipe ends: the server let it go").unwrap();
    assert!(read.len() < 1024 * 1024, "the server wrote on after the call ended: {} bytes", read.len());
    assert!(read.iter().all(|b| *b == b'x'));
}

#[test]
fn ctrl_c_ends_a_call_whose_output_the_server_writes_to_a_pipe_nobody_reads() {
    let env = TestEnv::new();
    big_cached_command(&env, "");
    let interrupt = |pid| kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    end_a_call_writing_to_a_pipe_nobody_reads(&env, interrupt, 130);
}

#[test]
fn a_time_limit_ends_a_call_whose_output_the_server_writes_to_a_pipe_nobody_reads() {
    let env = TestEnv::new();
    big_cached_command(&env, "timeout = 1\n");
    end_a_call_writing_to_a_pipe_nobody_reads(&env, |_| {}, 124);
}

/// The terminals (`/dev/ptmx` masters) process `pid` holds open.
fn masters_held(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()).filter(|target| target.ends_with("ptmx")).count()
}

#[test]
fn a_process_left_on_a_tty_call_does_not_keep_the_servers_terminal() {
    let env = TestEnv::new();
    let pidfile = env.root.path().join("left.pid");
    // It ignores the hang-up and keeps the terminal as its output, as a careless daemon would.
    let body = format!("(trap '' HUP; exec sleep 300) & echo $! > {}; echo started", pidfile.display());
    script(&env, "leave", &body);
    let file = tcp_server(&env);
    let server = env.status_json()["pid"].as_u64().unwrap() as u32;
    let run = on_pty(&env, &env.bin("mcli-client"), &["-q", "-f", &file, "--tty", "leave"]);
    run.expect_code(0);
    assert!(run.stdout.contains("started"), "{run:?}");
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let _left = KillOnDrop(std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap());
    // The call is over: the server closes the terminal (the reader does not wait for the
    // process left on it), as an ssh session's end would.
    wait_until("the server has closed the call's terminal", || masters_held(server) == 0);
}
