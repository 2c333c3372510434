//! The transports besides the local socket: `mcli-server --stdio` (one JSON-RPC session on
//! standard input and output), the `mcli-client --stdio` bridge, authenticated TCP (raw, and
//! through `mcli-client -f SERVERFILE`), and the transport each execution records in the history.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use mcli_tests::{Active, TestEnv, WAIT, process_gone, wait_for_active, wait_for_active_within, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// How long a TCP peer has to authenticate (`AUTH_WINDOW` in the server's `connection.rs`).
const AUTH_WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    /// One JSON text per line.
    Lines,
    /// LSP-style `Content-Length` headers.
    Headers,
}

/// A request as one JSON text.
fn request(id: Value, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// A notification as one JSON text.
fn notification(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

/// `text` framed as `framing` says.
fn frame(framing: Framing, text: &str) -> Vec<u8> {
    match framing {
        Framing::Lines => format!("{text}\n").into_bytes(),
        Framing::Headers => format!("Content-Length: {}\r\n\r\n{text}", text.len()).into_bytes(),
    }
}

/// Parses one message, which must be a JSON-RPC 2.0 response or notification.
fn parse(bytes: &[u8]) -> Result<Value, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e}): {:?}", String::from_utf8_lossy(bytes)))?;
    if value["jsonrpc"] == "2.0" && (value.get("id").is_some() || value.get("method").is_some()) {
        Ok(value)
    } else {
        Err(format!("not a JSON-RPC 2.0 message: {value}"))
    }
}

/// Reads one message framed as `framing`: `None` at the end of the input, `Err` for anything
/// that is not a framed JSON-RPC message.
fn read_message(reader: &mut impl BufRead, framing: Framing) -> Option<Result<Value, String>> {
    match framing {
        Framing::Lines => {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => None,
                Ok(_) => Some(parse(&line)),
                Err(e) => Some(Err(format!("read: {e}"))),
            }
        }
        Framing::Headers => {
            let mut length = None;
            let mut first = true;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) if first => return None,
                    Ok(0) => return Some(Err("the output ended inside headers".to_owned())),
                    Ok(_) => {}
                    Err(e) => return Some(Err(format!("read: {e}"))),
                }
                first = false;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                match line.split_once(':') {
                    Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                        length = value.trim().parse::<usize>().ok();
                    }
                    Some(_) => {}
                    None => return Some(Err(format!("not a header: {line:?}"))),
                }
            }
            let Some(length) = length else { return Some(Err("a frame without Content-Length".to_owned())) };
            let mut body = vec![0u8; length];
            match reader.read_exact(&mut body) {
                Ok(()) => Some(parse(&body)),
                Err(e) => Some(Err(format!("read body: {e}"))),
            }
        }
    }
}

/// The `result` of a successful response.
#[track_caller]
fn result(reply: &Value) -> &Value {
    assert!(reply.get("error").is_none(), "unexpected error: {reply}");
    reply.get("result").unwrap_or_else(|| panic!("no result: {reply}"))
}

/// Asserts an error response with `code`; returns its message.
#[track_caller]
fn error(reply: &Value, code: i64) -> String {
    assert!(reply.get("result").is_none(), "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
    reply["error"]["message"].as_str().unwrap_or_else(|| panic!("no message: {reply}")).to_owned()
}

/// The stdout text of the `mcli/output` notifications among `messages` for request `id`.
fn stdout_of(messages: &[Value], id: &Value) -> String {
    messages
        .iter()
        .filter(|m| {
            m["method"] == "mcli/output" && &m["params"]["request_id"] == id && m["params"]["stream"] == "stdout"
        })
        .map(|m| m["params"]["data"].as_str().unwrap_or_else(|| panic!("no data: {m}")))
        .collect()
}

/// The response with `id` among `messages`.
#[track_caller]
fn response<'a>(messages: &'a [Value], id: &Value) -> &'a Value {
    messages
        .iter()
        .find(|m| &m["id"] == id && m.get("method").is_none())
        .unwrap_or_else(|| panic!("no response to {id} among {messages:?}"))
}

/// A process spoken to over its standard input and output (`mcli-server --stdio` or the
/// `mcli-client --stdio` bridge). Every message it writes is parsed as JSON-RPC on a reader
/// thread; it is killed if the test ends early.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    framing: Framing,
    messages: mpsc::Receiver<Result<Value, String>>,
    stderr: mpsc::Receiver<String>,
}

impl Session {
    fn spawn(mut cmd: Command, framing: Framing) -> Session {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = read_message(&mut reader, framing) {
                let bad = message.is_err();
                if tx.send(message).is_err() || bad {
                    break;
                }
            }
        });
        let (tx, stderr_text) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = tx.send(text);
        });
        Session { stdin: child.stdin.take(), child, framing, messages, stderr: stderr_text }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("standard input is open");
        stdin.write_all(&frame(self.framing, text)).and_then(|()| stdin.flush()).expect("write to the session");
    }

    fn request(&mut self, id: Value, method: &str, params: Value) {
        self.send(&request(id, method, params));
    }

    #[track_caller]
    fn recv(&mut self) -> Value {
        match self.messages.recv_timeout(WAIT) {
            Ok(Ok(message)) => message,
            Ok(Err(err)) => panic!("standard output carried something else than protocol: {err}"),
            Err(RecvTimeoutError::Timeout) => panic!("no message within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("standard output closed"),
        }
    }

    /// Reads until the response to `id`; returns the notifications read before it, and it.
    #[track_caller]
    fn until_response(&mut self, id: &Value) -> (Vec<Value>, Value) {
        let mut notifications = Vec::new();
        loop {
            let message = self.recv();
            if message.get("method").is_none() {
                assert_eq!(&message["id"], id, "a response to another request: {message}");
                return (notifications, message);
            }
            notifications.push(message);
        }
    }

    /// Sends a request and returns its response, asserting that no notification came first.
    #[track_caller]
    fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.request(id.clone(), method, params);
        let (notifications, reply) = self.until_response(&id);
        assert!(notifications.is_empty(), "unexpected notifications: {notifications:?}");
        reply
    }

    /// Asks `status` in this session until a command named `command` is active.
    fn wait_active(&mut self, command: &str) {
        let mut id = 1000u64;
        wait_for_active(Active::Named(command), || {
            id += 1;
            result(&self.call(json!(id), "status", json!({}))).clone()
        });
    }

    /// Closes standard input, reads standard output to its end and waits for the exit: returns
    /// the exit status, the messages read and the standard error.
    fn finish(mut self) -> (Option<i32>, Vec<Value>, String) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        loop {
            match self.messages.recv_timeout(WAIT) {
                Ok(Ok(message)) => rest.push(message),
                Ok(Err(err)) => panic!("standard output carried something else than protocol: {err}"),
                Err(RecvTimeoutError::Timeout) => panic!("standard output still open {WAIT:?} after closing input"),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut status = None;
        wait_until("the process exits", || {
            status = self.child.try_wait().expect("wait for the session");
            status.is_some()
        });
        let stderr = self.stderr.recv_timeout(WAIT).expect("standard error closes");
        (status.and_then(|s| s.code()), rest, stderr)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a process on drop unless it is gone already (a command a test left running).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.filter(|&pid| !process_gone(pid)) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// A `#!/bin/sh` script in the user's commands dir of `env`.
fn script(env: &TestEnv, name: &str, body: &str) {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).expect("create the commands dir");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

/// `mcli-server --stdio`, spoken to in `framing`.
fn stdio_server(env: &TestEnv, framing: Framing) -> Session {
    Session::spawn(env.server_cmd(&["--stdio"]), framing)
}

/// Starts a detached server that also listens on TCP; returns its address and token.
fn tcp_server(env: &TestEnv) -> (String, String) {
    env.server(&["start", "--tcp", "127.0.0.1:0"]).expect_code(0);
    let file = env.server_file("server");
    let addr = file["tcp"].as_str().unwrap_or_else(|| panic!("no tcp in the server file: {file}")).to_owned();
    let token = file["token"].as_str().unwrap_or_else(|| panic!("no token in the server file: {file}")).to_owned();
    (addr, token)
}

fn server_file_path(env: &TestEnv, name: &str) -> String {
    env.runtime_dir.join(format!("{name}.json")).display().to_string()
}

/// A raw TCP connection to a server.
struct Tcp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Tcp {
    fn connect(addr: &str) -> Tcp {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        Tcp { stream, reader }
    }

    fn send(&mut self, framing: Framing, text: &str) {
        self.stream.write_all(&frame(framing, text)).expect("write to the server");
    }

    #[track_caller]
    fn recv(&mut self, framing: Framing) -> Value {
        match read_message(&mut self.reader, framing) {
            Some(Ok(message)) => message,
            Some(Err(err)) => panic!("{err}"),
            None => panic!("the server closed the connection"),
        }
    }

    #[track_caller]
    fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.call_raw(id.clone(), &request(id, method, params))
    }

    /// Sends one request line as it is and returns its reply, which must carry `id`.
    #[track_caller]
    fn call_raw(&mut self, id: Value, text: &str) -> Value {
        self.send(Framing::Lines, text);
        let reply = self.recv(Framing::Lines);
        assert_eq!(reply["id"], id, "{reply}");
        reply
    }

    /// True when the server has closed the connection (end of file, or a reset).
    fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn history(env: &TestEnv) -> Vec<Value> {
    let run = env.server(&["history", "--json"]);
    run.expect_code(0);
    let all: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout));
    all["entries"].as_array().unwrap_or_else(|| panic!("no entries: {all}")).clone()
}

// --- mcli-server --stdio ---

#[test]
fn stdio_session_with_content_length_framing_lists_executes_streams_and_cancels() {
    let env = TestEnv::new();
    let mut session = stdio_server(&env, Framing::Headers);

    let reply = session.call(json!(1), "list", json!({}));
    let commands = result(&reply)["commands"].as_array().expect("commands").clone();
    assert!(commands.iter().any(|c| c["name"] == "hello" && c["source"] == "builtin"), "{reply}");

    session.request(json!(2), "execute", json!({"command": "hello", "args": ["World", "--verbose"]}));
    let (notes, reply) = session.until_response(&json!(2));
    let res = result(&reply);
    assert_eq!(res["status"], "completed", "{reply}");
    assert_eq!(res["exit_code"], 0, "{reply}");
    assert!(res.get("stdout").is_none(), "streamed output is not in the result: {reply}");
    assert!(notes.iter().all(|n| n["method"] == "mcli/output" && n["params"]["id"] == res["id"]), "{notes:?}");
    assert_eq!(stdout_of(&notes, &json!(2)), "Hello World! (verbose mode)\n");

    session.request(json!(3), "execute", json!({"command": "sleep", "args": ["30"]}));
    session.wait_active("sleep");
    session.send(&notification("$/cancelRequest", json!({"id": 3})));
    let (_, reply) = session.until_response(&json!(3));
    assert_eq!(result(&reply)["status"], "cancelled", "{reply}");

    // The session goes on after a cancel, and ends cleanly when its input closes.
    let reply = session.call(json!(4), "health", json!({}));
    assert_eq!(result(&reply)["status"], "healthy", "{reply}");
    let (code, rest, stderr) = session.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(rest.is_empty(), "nothing more after the last reply: {rest:?}");
}

#[test]
fn stdio_session_with_ndjson_writes_only_protocol_to_stdout_and_logs_to_stderr() {
    let mut env = TestEnv::new();
    // Debug logging: plenty of log lines, none of which may reach standard output.
    env.set_env("RUST_LOG", "debug");
    let mut session = stdio_server(&env, Framing::Lines);

    let reply = session.call(json!(1), "health", json!({}));
    assert_eq!(result(&reply)["status"], "healthy", "{reply}");

    session.request(json!("two"), "execute", json!({"command": "echo", "args": ["a", "b"]}));
    let (notes, reply) = session.until_response(&json!("two"));
    assert_eq!(result(&reply)["status"], "completed", "{reply}");
    assert_eq!(stdout_of(&notes, &json!("two")), "a b\n");

    let reply = session.call(json!(3), "execute", json!({"command": "echo", "args": ["quiet"], "stream": false}));
    assert_eq!(result(&reply)["stdout"], "quiet\n", "{reply}");

    // A bad message gets an error, and the session goes on.
    session.send("{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"no-such-method\"}");
    let reply = session.recv();
    assert_eq!(reply["id"], 4, "{reply}");
    error(&reply, -32601);

    let (code, rest, stderr) = session.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(stderr.contains("health"), "the debug log goes to standard error: {stderr}");
}

#[test]
fn closing_stdio_input_ends_the_session_and_its_running_command() {
    let env = TestEnv::new();
    let pid_file = env.root.path().join("linger.pid");
    script(
        &env,
        "linger",
        &format!("echo $$ > '{p}.tmp' && mv '{p}.tmp' '{p}'\nexec sleep 300\n", p = pid_file.display()),
    );
    let mut session = stdio_server(&env, Framing::Lines);
    let mut guard = KillOnDrop(None);

    session.request(json!(1), "execute", json!({"command": "linger", "args": []}));
    wait_until("the command has written its pid", || pid_file.exists());
    let pid: u32 = std::fs::read_to_string(&pid_file).expect("pid file").trim().parse().expect("a pid");
    guard.0 = Some(pid);
    assert!(!process_gone(pid), "the command runs");

    let (code, rest, stderr) = session.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");
    for message in &rest {
        if message["id"] == 1 {
            assert_eq!(result(message)["status"], "cancelled", "{message}");
        }
    }
    wait_until("the command has ended with the session", || process_gone(pid));
}

#[test]
fn stdio_takes_no_subcommand() {
    let env = TestEnv::new();
    let run = env.server(&["--stdio", "status"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--stdio"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

// --- mcli-client --stdio ---

#[test]
fn client_stdio_bridge_starts_the_server_and_delivers_replies_in_flight() {
    let env = TestEnv::new();
    assert!(env.server_pids().is_empty());
    let mut bridge = Session::spawn(env.client_cmd(&["--stdio"]), Framing::Lines);
    bridge.request(json!(1), "health", json!({}));
    bridge.request(json!(2), "execute", json!({"command": "sleep", "args": ["0.3"]}));
    bridge.request(json!(3), "execute", json!({"command": "echo", "args": ["after"]}));
    // Input closes right after the requests: the replies still come.
    let (code, messages, stderr) = bridge.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");

    assert_eq!(result(response(&messages, &json!(1)))["status"], "healthy");
    let slept = result(response(&messages, &json!(2)));
    assert_eq!(slept["status"], "completed", "{slept}");
    assert_eq!(slept["exit_code"], 0, "{slept}");
    assert_eq!(result(response(&messages, &json!(3)))["status"], "completed");
    assert_eq!(stdout_of(&messages, &json!(3)), "after\n");
    let responses = messages.iter().filter(|m| m.get("method").is_none()).count();
    assert_eq!(responses, 3, "one response per request: {messages:?}");

    let pids = env.server_pids();
    assert_eq!(pids.len(), 1, "exactly one server: {pids:?}");
    assert_eq!(env.server_file("server")["pid"], pids[0]);
}

#[test]
fn client_stdio_bridge_passes_content_length_framing_through() {
    let env = TestEnv::new();
    let mut bridge = Session::spawn(env.client_cmd(&["--stdio"]), Framing::Headers);
    bridge.request(json!(1), "list", json!({}));
    let reply = bridge.recv();
    assert_eq!(reply["id"], 1, "{reply}");
    assert!(result(&reply)["commands"].as_array().is_some_and(|c| c.iter().any(|c| c["name"] == "hello")), "{reply}");
    bridge.request(json!(2), "execute", json!({"command": "hello", "args": ["editor"]}));
    let (code, messages, stderr) = bridge.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(result(response(&messages, &json!(2)))["status"], "completed", "{messages:?}");
    assert_eq!(stdout_of(&messages, &json!(2)), "Hello editor!\n");
}

#[test]
fn client_stdio_bridge_over_tcp_delivers_replies_in_flight() {
    let env = TestEnv::new();
    tcp_server(&env);
    let file = server_file_path(&env, "server");
    let mut bridge = Session::spawn(env.client_cmd(&["--stdio", "-f", &file]), Framing::Lines);
    bridge.request(json!(1), "execute", json!({"command": "sleep", "args": ["0.3"]}));
    bridge.request(json!(2), "execute", json!({"command": "echo", "args": ["after"]}));
    let (code, messages, stderr) = bridge.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(result(response(&messages, &json!(2)))["status"], "completed", "{messages:?}");
    let slept = result(response(&messages, &json!(1)));
    assert_eq!(slept["status"], "completed", "a half-close is not a hang-up: {slept}");
}

// --- TCP ---

#[test]
fn tcp_listener_is_announced_in_the_readiness_line_the_server_file_and_status() {
    let env = TestEnv::new();
    let run = env.server(&["start", "--tcp", "127.0.0.1:0"]);
    run.expect_code(0);
    assert!(run.stdout.contains("TCP 127.0.0.1:"), "{}", run.stdout);
    let file = env.server_file("server");
    let addr = file["tcp"].as_str().unwrap_or_else(|| panic!("no tcp: {file}"));
    let port = addr.strip_prefix("127.0.0.1:").unwrap_or_else(|| panic!("not loopback: {addr}"));
    assert!(port.parse::<u16>().is_ok_and(|p| p != 0), "{addr}");
    assert!(run.stdout.contains(&format!("TCP {addr}")), "{}", run.stdout);
    assert!(file["token"].as_str().is_some_and(|t| t.len() >= 32), "{file}");

    let status = env.server(&["status", "--json"]);
    status.expect_code(0);
    let status: Value = serde_json::from_str(&status.stdout).expect("status is JSON");
    assert_eq!(status["tcp"], addr, "{status}");

    // Without --tcp there is no TCP address.
    env.server(&["-s", "plain", "start"]).expect_code(0);
    assert_eq!(env.server_file("plain")["tcp"], Value::Null);
}

#[test]
fn tcp_connections_must_authenticate_first() {
    let env = TestEnv::new();
    let (addr, token) = tcp_server(&env);

    // Anything but `authenticate` first is refused, and the connection closed.
    let mut conn = Tcp::connect(&addr);
    let reply = conn.call_raw(json!(1), r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#);
    assert!(error(&reply, -32003).contains("unauthorized"), "{reply}");
    assert!(conn.is_closed(), "the server closes an unauthenticated connection");

    // So is a wrong token.
    let mut conn = Tcp::connect(&addr);
    let reply = conn.call(json!(1), "authenticate", json!({"token": "not-the-token"}));
    assert!(error(&reply, -32003).contains("unauthorized"), "{reply}");
    assert!(conn.is_closed(), "the server closes a connection with a wrong token");

    // The right token opens the connection to every method.
    let mut conn = Tcp::connect(&addr);
    conn.send(
        Framing::Lines,
        &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"authenticate","params":{{"token":"{token}"}}}}"#),
    );
    let reply = conn.recv(Framing::Lines);
    assert_eq!(reply["id"], 1, "{reply}");
    assert_eq!(result(&reply)["ok"], true, "{reply}");
    let reply = conn.call(json!(2), "health", json!({}));
    assert_eq!(result(&reply)["status"], "healthy", "{reply}");
    conn.send(Framing::Lines, &request(json!(3), "execute", json!({"command": "hello", "args": ["tcp"]})));
    let mut messages = Vec::new();
    let reply = loop {
        let message = conn.recv(Framing::Lines);
        if message.get("method").is_none() {
            break message;
        }
        messages.push(message);
    };
    assert_eq!(reply["id"], 3, "{reply}");
    assert_eq!(result(&reply)["status"], "completed", "{reply}");
    assert_eq!(stdout_of(&messages, &json!(3)), "Hello tcp!\n");
    let reply = conn.call(json!(4), "execute", json!({"command": "echo", "args": ["x"], "stream": false}));
    assert_eq!(result(&reply)["stdout"], "x\n", "{reply}");

    // Content-Length framing works on TCP too, authentication included.
    let mut conn = Tcp::connect(&addr);
    conn.send(Framing::Headers, &request(json!("auth"), "authenticate", json!({"token": token})));
    let reply = conn.recv(Framing::Headers);
    assert_eq!(reply["id"], "auth", "{reply}");
    assert_eq!(result(&reply)["ok"], true, "{reply}");
    conn.send(Framing::Headers, &request(json!(2), "health", json!({})));
    let reply = conn.recv(Framing::Headers);
    assert_eq!(result(&reply)["status"], "healthy", "{reply}");
}

#[test]
fn tcp_unauthorized_reply_carries_the_request_id() {
    let env = TestEnv::new();
    let (addr, _) = tcp_server(&env);
    for (id, method, params) in [
        (json!(1), "health", json!({})),
        (json!("x"), "execute", json!({"command": "hello", "args": []})),
        (json!(3), "authenticate", json!({})),
    ] {
        let mut conn = Tcp::connect(&addr);
        let reply = conn.call(id, method, params);
        error(&reply, -32003);
        assert!(conn.is_closed());
    }
}

#[test]
fn tcp_connection_that_sends_nothing_is_closed_by_the_server() {
    let env = TestEnv::new();
    let (addr, _) = tcp_server(&env);
    let mut conn = Tcp::connect(&addr);
    let started = Instant::now();
    conn.stream.set_read_timeout(Some(AUTH_WINDOW + Duration::from_secs(15))).expect("read timeout");
    assert!(conn.is_closed(), "the server closes a silent connection");
    let elapsed = started.elapsed();
    assert!(elapsed >= AUTH_WINDOW - Duration::from_millis(500), "closed too early, after {elapsed:?}");
    assert!(elapsed < AUTH_WINDOW + Duration::from_secs(15), "closed after {elapsed:?}");
    // The server is none the worse for it.
    let mut conn = Tcp::connect(&addr);
    let reply = conn.call_raw(json!(1), r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#);
    error(&reply, -32003);
}

#[test]
fn client_reaches_a_server_through_its_server_file() {
    let env = TestEnv::new();
    tcp_server(&env);
    let file = server_file_path(&env, "server");
    let run = env.client(&["-f", &file, "hello", "tcp"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello tcp!\n");
    // The exit status of the command comes through TCP as well.
    env.client(&["-f", &file, "exit", "3"]).expect_code(3);

    // A server file without TCP: the message says how to get one.
    env.server(&["-s", "plain", "start"]).expect_code(0);
    let run = env.client(&["-f", &server_file_path(&env, "plain"), "hello"]);
    run.expect_code(69);
    assert!(run.stderr.contains("--tcp"), "{}", run.stderr);

    // A missing file.
    let missing = env.root.path().join("missing.json");
    let run = env.client(&["-f", &missing.display().to_string(), "hello"]);
    run.expect_code(69);
    assert!(run.stderr.contains("cannot read server file"), "{}", run.stderr);

    // The server of the file has stopped: nothing is started on demand; `-a local` runs here.
    let old = env.root.path().join("old.json");
    std::fs::copy(&file, &old).expect("copy the server file");
    let old = old.display().to_string();
    env.server(&["stop"]).expect_code(0);
    let run = env.client(&["-f", &old, "hello"]);
    run.expect_code(69);
    assert!(run.stderr.contains("no server answers on TCP"), "{}", run.stderr);
    let run = env.client(&["-a", "local", "-f", &old, "hello", "local"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello local!\n");
    // Neither call started a server: only the one without TCP runs.
    let plain = env.server_file("plain")["pid"].as_u64().expect("pid") as u32;
    assert_eq!(env.server_pids(), vec![plain]);
}

// --- history ---

#[test]
fn history_records_the_transport_of_each_execution() {
    let env = TestEnv::new();
    tcp_server(&env);
    env.client(&["-q", "-f", &server_file_path(&env, "server"), "hello", "tcp"]).expect_code(0);

    // A stdio session writes to the history of the daemon of the same name.
    let mut session = stdio_server(&env, Framing::Lines);
    let reply =
        session.call(json!(1), "execute", json!({"command": "echo", "args": ["via", "stdio"], "stream": false}));
    assert_eq!(result(&reply)["status"], "completed", "{reply}");
    let (code, _, stderr) = session.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");

    env.client(&["-q", "echo", "socket"]).expect_code(0);

    let entries = history(&env);
    let find = |transport: &str| {
        entries
            .iter()
            .find(|e| e["transport"] == transport)
            .unwrap_or_else(|| panic!("no `{transport}` entry: {entries:?}"))
    };
    assert_eq!(entries.len(), 3, "{entries:?}");
    let tcp = find("tcp");
    assert_eq!((&tcp["command"], &tcp["args"]), (&json!("hello"), &json!(["tcp"])), "{tcp}");
    let stdio = find("stdio");
    assert_eq!((&stdio["command"], &stdio["args"]), (&json!("echo"), &json!(["via", "stdio"])), "{stdio}");
    let socket = find("socket");
    assert_eq!(socket["args"], json!(["socket"]), "{socket}");
    let mut ids: Vec<u64> = entries.iter().map(|e| e["id"].as_u64().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct ids: {entries:?}");
}

#[test]
fn history_ids_match_execution_ids_beside_a_stdio_session() {
    let env = TestEnv::new();
    let run = env.client(&["-q", "--json", "echo", "first"]);
    run.expect_code(0);

    let mut session = stdio_server(&env, Framing::Lines);
    let reply = session.call(json!(1), "execute", json!({"command": "echo", "args": ["stdio"], "stream": false}));
    let stdio_id = result(&reply)["id"].clone();
    let (code, _, stderr) = session.finish();
    assert_eq!(code, Some(0), "stderr: {stderr}");

    let run = env.client(&["-q", "--json", "echo", "second"]);
    run.expect_code(0);
    let second: Value = serde_json::from_str(&run.stdout).expect("result is JSON");

    let entries = history(&env);
    let entry_of = |args: Value| {
        entries.iter().find(|e| e["args"] == args).unwrap_or_else(|| panic!("no entry for {args}: {entries:?}"))
    };
    assert_eq!(entry_of(json!(["stdio"]))["id"], stdio_id, "{entries:?}");
    assert_ne!(second["id"], stdio_id, "two executions reported the same id");
    assert_eq!(entry_of(json!(["second"]))["id"], second["id"], "{entries:?}");
}

#[test]
fn a_tcp_peer_that_closes_entirely_ends_its_silent_command_and_a_half_close_gets_its_reply() {
    let env = TestEnv::new();
    let (addr, token) = tcp_server(&env);
    let authenticated = || {
        let mut conn = Tcp::connect(&addr);
        let reply = conn.call(json!(0), "authenticate", json!({"token": token}));
        assert_eq!(result(&reply)["ok"], true, "{reply}");
        conn
    };

    // A half-close: the peer sends its request, shuts its sending side and reads the reply.
    let mut half = authenticated();
    half.send(Framing::Lines, &request(json!(1), "execute", json!({"command": "sleep", "args": ["1"]})));
    half.stream.shutdown(std::net::Shutdown::Write).expect("shut down the sending side");
    let reply = half.recv(Framing::Lines);
    assert_eq!(result(&reply)["status"], "completed", "{reply}");

    // A full close while a command that writes nothing runs: the keepalive probes find the
    // peer gone once its kernel has let go of the connection (about a minute), and the
    // command is cancelled long before its own 300 s.
    let mut gone = authenticated();
    gone.send(Framing::Lines, &request(json!(1), "execute", json!({"command": "sleep", "args": ["300"]})));
    env.wait_for_active(Active::Any);
    drop(gone);
    // The command of the peer that closed has ended.
    wait_for_active_within(Duration::from_secs(150), Active::Count(0), || env.status_json());
    // The row is committed just after the command leaves the active list.
    let mut entries = Vec::new();
    wait_until("the cancelled call is in the history", || {
        entries = history(&env);
        entries.len() == 2
    });
    assert_eq!(entries[0]["status"], "cancelled", "{entries:?}");
    assert_eq!(entries[0]["args"], json!(["300"]), "{entries:?}");
}

#[test]
fn before_tcp_authentication_everything_but_authenticate_is_refused_and_no_token_comes_back() {
    let env = TestEnv::new();
    let (addr, token) = tcp_server(&env);
    let auth = request(json!(1), "authenticate", json!({"token": token}));
    for (first, id) in [
        // A batch, even of the right request; params by position; a notification.
        (format!("[{auth}]\n"), json!(null)),
        (format!("{}\n", json!(["authenticate", {"token": token}])), json!(null)),
        (format!("{}\n", request(json!(1), "authenticate", json!([token]))), json!(1)),
        (format!("{}\n", notification("authenticate", json!({"token": token}))), json!(null)),
        // What is not JSON-RPC at all, nor a frame.
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), json!(null)),
        // A refused token never comes back as the id.
        (format!("{}\n", request(json!("guess-1234"), "authenticate", json!({"token": "guess-1234"}))), json!(null)),
        (format!("{}\n", request(json!({"t": "guess"}), "authenticate", json!({"token": "guess"}))), json!(null)),
        (format!("{}\n", request(json!(-7), "status", json!({}))), json!(-7)),
    ] {
        let mut conn = Tcp::connect(&addr);
        conn.stream.write_all(first.as_bytes()).expect("write to the server");
        // What follows the refused message never runs.
        conn.stream.write_all(request(json!(2), "health", json!({})).as_bytes()).expect("write");
        let framing = if first.starts_with("GET") { Framing::Headers } else { Framing::Lines };
        let reply = conn.recv(framing);
        assert_eq!(reply["id"], id, "{first}: {reply}");
        assert!(error(&reply, -32003).contains("unauthorized"), "{first}: {reply}");
        assert!(conn.is_closed(), "{first}: the connection is closed");
    }
    assert_eq!(history(&env).len(), 0, "nothing ran");
}
