//! The HTTP bridge end to end: the original MCLI API daemon's endpoints and JSON fields, every
//! rejection (token, `Host`, media type, body size, bad bodies, unknown commands, busy), no CORS
//! ever, the `[api_daemon]` config that turns the bridge on, and the original's Python client.
//!
//! The requests go over a plain `TcpStream` with a tiny HTTP/1.1 writer and reader below, so that
//! the tests control every header (and need no HTTP client crate).

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mcli_tests::{Active, Run, TestEnv, WAIT, process_gone, wait_for_active, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The bridge's limit on a request body (`mcli_server::transport::http::MAX_BODY`).
const MAX_BODY: usize = 1024 * 1024;

/// The endpoints `GET /` lists.
const ENDPOINTS: [&str; 13] = [
    "GET /",
    "GET /health",
    "GET /status",
    "GET /commands",
    "GET /history",
    "GET /metrics",
    "GET /jobs",
    "GET /jobs/ID",
    "GET /jobs/ID/output",
    "POST /execute",
    "POST /rpc",
    "POST /daemon/start",
    "POST /daemon/stop",
];

/// The endpoints that need the token, with a body each accepts.
const GUARDED: [(&str, &str, &str); 11] = [
    ("GET", "/status", ""),
    ("GET", "/commands", ""),
    ("GET", "/history", ""),
    ("GET", "/metrics", ""),
    ("GET", "/jobs", ""),
    ("GET", "/jobs/1", ""),
    ("GET", "/jobs/1/output", ""),
    ("POST", "/execute", r#"{"command_name": "hello"}"#),
    ("POST", "/rpc", r#"{"jsonrpc": "2.0", "id": 1, "method": "health"}"#),
    ("POST", "/daemon/start", "{}"),
    ("POST", "/daemon/stop", "{}"),
];

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client.

/// A response, read to the end of the connection.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?} {:?}", self.status, self.headers, self.text())
    }
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let text = String::from_utf8_lossy(raw);
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no header end: {text:?}"));
        let head = std::str::from_utf8(&raw[..end]).unwrap_or_else(|e| panic!("header is not UTF-8 ({e}): {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line: {status_line:?}");
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status: {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("header line: {line:?}"));
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let mut response = Response { status, headers, body: Vec::new() };
        let rest = &raw[end + 4..];
        response.body = if response.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            dechunk(rest)
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().unwrap_or_else(|_| panic!("content-length: {length:?}"));
            assert_eq!(rest.len(), length, "body length differs from Content-Length: {text:?}");
            rest.to_vec()
        } else {
            rest.to_vec()
        };
        response
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, checking that it says so.
    #[track_caller]
    fn json(&self) -> Value {
        let media = self.header("content-type").unwrap_or_default();
        assert!(media.starts_with("application/json"), "Content-Type {media:?}, not JSON: {self:?}");
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; headers {:?}, body: {}", self.headers, self.text());
        self.json()
    }

    /// Asserts an error status with the bridge's JSON error body; returns its message.
    #[track_caller]
    fn expect_error(&self, status: u16) -> String {
        let body = self.expect(status);
        assert_eq!(body["success"], false, "{body}");
        body["error"].as_str().unwrap_or_else(|| panic!("no error message: {body}")).to_owned()
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&rest[..end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
        rest = &rest[end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Sends one request on a new connection and reads the whole response.
fn send(addr: &str, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    // A server that refuses a body may answer and close before reading all of it: the answer
    // is what counts, so a failed write is not an error here.
    let _ = stream.write_all(request);
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw) {
        assert!(!raw.is_empty(), "no response from {addr}: {err}");
    }
    let response = Response::parse(&raw);
    // No response ever allows a cross-origin page to read it.
    let cors: Vec<_> = response.headers.iter().filter(|(n, _)| n.starts_with("access-control-")).collect();
    assert!(cors.is_empty(), "a CORS header: {cors:?} in {response:?}");
    response
}

/// The bridge of a running server: its address and token.
struct Bridge {
    addr: String,
    token: String,
}

impl Bridge {
    /// The bridge of server `server` of `env`, from its server file.
    fn of(env: &TestEnv) -> Bridge {
        let file = env.server_file("server");
        let addr = file["http"].as_str().unwrap_or_else(|| panic!("the server serves no HTTP: {file}")).to_owned();
        let token = file["token"].as_str().unwrap_or_else(|| panic!("no token: {file}")).to_owned();
        Bridge { addr, token }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A request with exactly `headers` (plus `Host`, unless given, and `Connection: close`)
    /// and, when given, a body with its `Content-Length`.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
            head += &format!("Host: {}\r\n", self.addr);
        }
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        if let Some(body) = body {
            head += &format!("Content-Length: {}\r\n", body.len());
        }
        head += "Connection: close\r\n\r\n";
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        send(&self.addr, &bytes)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `GET path` with the token.
    fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[("Authorization", &self.bearer())], None)
    }

    /// `GET path` without a token.
    fn get_open(&self, path: &str) -> Response {
        self.request("GET", path, &[], None)
    }

    /// `POST path` with the token and a JSON body.
    fn post(&self, path: &str, body: &Value) -> Response {
        self.post_raw(path, "application/json", body.to_string().as_bytes())
    }

    /// `POST path` with the token and `body` as `content_type`.
    fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> Response {
        let headers = [("Authorization", self.bearer()), ("Content-Type", content_type.to_owned())];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.request("POST", path, &headers, Some(body))
    }

    /// `POST /execute` with `body`, answered 200; returns the result.
    #[track_caller]
    fn execute(&self, body: Value) -> Value {
        self.post("/execute", &body).expect(200)
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and config.

fn write_config(env: &TestEnv, text: &str) {
    let dir = env.config_home.join("mcli");
    std::fs::create_dir_all(&dir).expect("create the config dir");
    std::fs::write(dir.join("config.toml"), text).expect("write config");
}

/// Starts the server of `env` in the background with `start ARGS` and returns its bridge.
fn start(env: &TestEnv, args: &[&str]) -> Bridge {
    let mut all = vec!["start"];
    all.extend_from_slice(args);
    env.server(&all).expect_code(0);
    Bridge::of(env)
}

/// A fresh environment with a server serving HTTP on a random loopback port.
fn bridge() -> (TestEnv, Bridge) {
    let env = TestEnv::new();
    let bridge = start(&env, &["--http"]);
    (env, bridge)
}

fn server_pid(env: &TestEnv) -> u32 {
    env.server_file("server")["pid"].as_u64().expect("pid in the server file") as u32
}

/// A free loopback port: bound, then let go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A child process killed when dropped, even on panic.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn interrupt_and_wait(mut self) -> Run {
        let child = self.0.take().expect("child");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("interrupt the child");
        Run::wait(child)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until the bridge's `GET /status` shows `count` active commands; returns the status.
fn wait_active(bridge: &Bridge, count: usize) -> Value {
    wait_for_active(Active::Count(count), || bridge.get("/status").expect(200))
}

// ---------------------------------------------------------------------------------------------
// 1. The endpoints.

#[test]
fn root_and_health_answer_without_a_token() {
    let (_env, bridge) = bridge();
    let root = bridge.get_open("/").expect(200);
    assert_eq!(root["service"], "mcli", "{root}");
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"), "{root}");
    assert_eq!(root["status"], "running", "{root}");
    assert_eq!(root["endpoints"], json!(ENDPOINTS), "{root}");

    let health = bridge.get_open("/health").expect(200);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");
    assert!(health["uptime_secs"].is_u64(), "{health}");

    // With a token they answer the same.
    assert_eq!(bridge.get("/").expect(200)["service"], "mcli");
    assert_eq!(bridge.get("/health").expect(200)["status"], "healthy");
}

#[test]
fn status_and_commands() {
    let (env, bridge) = bridge();
    let status = bridge.get("/status").expect(200);
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["active_commands"], json!([]), "{status}");
    assert_eq!(status["command_history_count"], 0, "{status}");
    assert!(status["config"]["api_daemon"].is_object(), "{status}");
    assert_eq!(status["config"]["api_daemon"]["require_token"], true, "{status}");
    assert_eq!(status["pid"], server_pid(&env), "{status}");
    assert_eq!(status["http"], bridge.addr.as_str(), "{status}");

    let listed = bridge.get("/commands").expect(200);
    let commands = listed["commands"].as_array().unwrap_or_else(|| panic!("no commands: {listed}"));
    assert_eq!(listed["total"], commands.len(), "{listed}");
    for name in ["hello", "echo", "pwd", "sleep", "exit"] {
        let entry = commands.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("`{name}` missing: {listed}"));
        assert_eq!(entry["source"], "builtin", "{entry}");
        assert!(!entry["description"].as_str().unwrap_or_default().is_empty(), "{entry}");
    }

    // The count follows the executions.
    bridge.execute(json!({"command_name": "echo", "args": ["one"]}));
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 1);
}

#[test]
fn execute_answers_the_originals_fields() {
    let (env, bridge) = bridge();
    let result = bridge.execute(json!({"command_name": "hello", "args": ["World", "--verbose"], "timeout": 20}));
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["output"], "Hello World! (verbose mode)\n", "{result}");
    assert_eq!(result["result"], result["output"], "the decorator reads `result`: {result}");
    assert_eq!(result["error"], Value::Null, "{result}");
    assert_eq!(result["exit_code"], 0, "{result}");
    assert!(result["execution_time_ms"].is_u64(), "{result}");
    assert_eq!(result["status"], "completed", "{result}");

    // `command` is accepted for `command_name`, and `args` may be left out.
    let result = bridge.execute(json!({"command": "echo", "args": ["a", "b c"]}));
    assert_eq!((&result["success"], &result["output"]), (&json!(true), &json!("a b c\n")), "{result}");
    assert_eq!(result["result"], "a b c\n", "{result}");
    let result = bridge.execute(json!({"command": "hello"}));
    assert_eq!(result["output"], "Hello World!\n", "{result}");
    let result = bridge.execute(json!({"command_name": "echo", "args": ["é ✓"]}));
    assert_eq!(result["output"], "é ✓\n", "{result}");

    // The token from `mcli-server token` is the one of the server file.
    let run = env.server(&["token"]);
    run.expect_code(0);
    assert_eq!(run.stdout.trim_end(), bridge.token);
}

#[test]
fn a_failing_command_is_no_success() {
    let (_env, bridge) = bridge();
    let result = bridge.execute(json!({"command_name": "exit", "args": ["3"]}));
    assert_eq!(result["success"], false, "{result}");
    assert_eq!(result["exit_code"], 3, "{result}");
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["output"], "", "{result}");
    assert_eq!(result["result"], "", "{result}");
    assert!(result["error"].as_str().is_some_and(|e| !e.is_empty()), "a failure says why: {result}");

    // A usage error's stderr is the error.
    let result = bridge.execute(json!({"command_name": "hello", "args": ["--frobnicate"]}));
    assert_eq!((&result["success"], &result["exit_code"]), (&json!(false), &json!(2)), "{result}");
    assert_eq!(result["error"], "hello: unknown option `--frobnicate`\nusage: hello [NAME] [--verbose]\n", "{result}");
}

#[test]
fn a_timeout_ends_the_command() {
    let (_env, bridge) = bridge();
    let result = bridge.execute(json!({"command_name": "sleep", "args": ["60"], "timeout": 0.5}));
    assert_eq!(result["status"], "timed_out", "{result}");
    assert_eq!(result["success"], false, "{result}");
    assert_eq!(result["exit_code"], Value::Null, "{result}");
    let ms = result["execution_time_ms"].as_u64().unwrap_or_else(|| panic!("no execution time: {result}"));
    assert!((450..WAIT.as_millis() as u64).contains(&ms), "took {ms} ms: {result}");
    assert!(result["error"].as_str().is_some_and(|e| e.contains("timed_out")), "{result}");
    assert_eq!(wait_active(&bridge, 0)["active_commands"], json!([]));
}

#[test]
fn history_with_its_filters() {
    let (_env, bridge) = bridge();
    assert_eq!(bridge.get("/history").expect(200), json!({"entries": []}));
    bridge.execute(json!({"command_name": "hello", "args": ["Ann"]}));
    bridge.execute(json!({"command_name": "exit", "args": ["3"]}));
    bridge.execute(json!({"command_name": "hello", "args": ["Bob"]}));

    let names = |path: &str| -> Vec<(String, Value)> {
        let history = bridge.get(path).expect(200);
        let entries = history["entries"].as_array().unwrap_or_else(|| panic!("no entries: {history}"));
        entries.iter().map(|e| (e["command"].as_str().unwrap_or_default().to_owned(), e["args"].clone())).collect()
    };
    let all = bridge.get("/history").expect(200);
    let entries = all["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{all}");
    let newest = &entries[0];
    assert_eq!(newest["command"], "hello", "{all}");
    assert_eq!(newest["args"], json!(["Bob"]), "{all}");
    assert_eq!(newest["status"], "completed", "{all}");
    assert_eq!(newest["exit_code"], 0, "{all}");
    assert_eq!(newest["transport"], "http", "{all}");
    assert!(newest["started"].is_string() && newest["duration_ms"].is_u64() && newest["id"].is_u64(), "{all}");

    assert_eq!(names("/history?limit=1"), [("hello".to_owned(), json!(["Bob"]))]);
    assert_eq!(names("/history?limit=2"), [("hello".to_owned(), json!(["Bob"])), ("exit".to_owned(), json!(["3"]))]);
    assert_eq!(
        names("/history?command=hello"),
        [("hello".to_owned(), json!(["Bob"])), ("hello".to_owned(), json!(["Ann"]))]
    );
    assert_eq!(names("/history?failed=true"), [("exit".to_owned(), json!(["3"]))]);
    assert_eq!(names("/history?command=hello&failed=true"), []);
    assert_eq!(names("/history?command=exit&failed=true&limit=5"), [("exit".to_owned(), json!(["3"]))]);
    assert_eq!(names("/history?failed=false").len(), 3);
    assert_eq!(names("/history?command=nothing"), []);

    for bad in ["/history?limit=many", "/history?failed=maybe", "/history?limit=-1"] {
        let message = bridge.get(bad).expect_error(400);
        assert!(message.contains("limit"), "{bad}: {message}");
    }
}

#[test]
fn rpc_takes_a_request_a_batch_and_notifications() {
    let (_env, bridge) = bridge();
    let reply = bridge.post("/rpc", &json!({"jsonrpc": "2.0", "id": 7, "method": "health"})).expect(200);
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["result"]["status"], "healthy", "{reply}");

    // Output comes in the result: nothing is streamed over HTTP.
    let request =
        json!({"jsonrpc": "2.0", "id": "x", "method": "execute", "params": {"command": "echo", "args": ["hi"]}});
    let reply = bridge.post("/rpc", &request).expect(200);
    assert_eq!(reply["id"], "x", "{reply}");
    assert_eq!(reply["result"]["status"], "completed", "{reply}");
    assert_eq!(reply["result"]["stdout"], "hi\n", "{reply}");

    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "health"},
        {"jsonrpc": "2.0", "method": "health"},
        {"jsonrpc": "2.0", "id": 2, "method": "list"},
        {"jsonrpc": "2.0", "id": 3, "method": "no_such_method"},
    ]);
    let replies = bridge.post("/rpc", &batch).expect(200);
    let replies = replies.as_array().unwrap_or_else(|| panic!("a batch answers an array: {replies}"));
    assert_eq!(replies.len(), 3, "no reply to the notification: {replies:?}");
    let by_id =
        |id: i64| replies.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no reply {id}: {replies:?}"));
    assert_eq!(by_id(1)["result"]["status"], "healthy");
    assert!(by_id(2)["result"]["commands"].as_array().is_some_and(|c| c.iter().any(|c| c["name"] == "hello")));
    assert_eq!(by_id(3)["error"]["code"], -32601);

    // A JSON-RPC error is still an HTTP 200: the reply carries it.
    let reply = bridge.post("/rpc", &json!({"jsonrpc": "2.0", "id": 4, "method": "no_such_method"})).expect(200);
    assert_eq!(reply["error"]["code"], -32601, "{reply}");

    // Notifications only: 204 and no body.
    let response = bridge.post("/rpc", &json!({"jsonrpc": "2.0", "method": "health"}));
    assert_eq!(response.status, 204, "{response:?}");
    assert!(response.body.is_empty(), "{response:?}");
    let response = bridge.post("/rpc", &json!([{"jsonrpc": "2.0", "method": "health"}]));
    assert_eq!(response.status, 204, "{response:?}");
    assert!(response.body.is_empty(), "{response:?}");
}

#[test]
fn daemon_start_says_it_already_runs() {
    let (env, bridge) = bridge();
    for response in
        [bridge.post("/daemon/start", &json!({})), bridge.post_raw("/daemon/start", "application/json", b"")]
    {
        let reply = response.expect(200);
        assert_eq!(reply["success"], true, "{reply}");
        assert_eq!(reply["pid"], server_pid(&env), "{reply}");
        assert!(reply["message"].as_str().is_some_and(|m| m.contains("already running")), "{reply}");
    }
    assert_eq!(env.server_pids(), [server_pid(&env)], "no second server");
}

#[test]
fn daemon_stop_ends_the_server() {
    let (env, bridge) = bridge();
    let pid = server_pid(&env);
    let reply = bridge.post("/daemon/stop", &json!({})).expect(200);
    assert_eq!(reply["success"], true, "{reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
    wait_until("the server has exited", || process_gone(pid));
    assert!(!env.runtime_dir.join("server.json").exists(), "the server file is left behind");
    assert!(!env.socket("server").exists(), "the socket is left behind");
    env.server(&["status"]).expect_code(1);
}

// ---------------------------------------------------------------------------------------------
// 2. The rejections.

#[test]
fn every_other_endpoint_needs_the_token() {
    let (env, bridge) = bridge();
    let wrong = "0".repeat(bridge.token.len());
    for (method, path, body) in GUARDED {
        let body = (method == "POST").then_some(body.as_bytes());
        let json_type = [("Content-Type", "application/json")];
        let content = if body.is_some() { &json_type[..] } else { &[] };
        let with = |auth: &[(&str, &str)]| {
            let headers: Vec<(&str, &str)> = auth.iter().chain(content).copied().collect();
            bridge.request(method, path, &headers, body)
        };

        let response = with(&[]);
        let message = response.expect_error(401);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{method} {path}: {response:?}");
        assert!(message.contains("X-API-Key") && message.contains("Bearer"), "{method} {path}: {message}");

        for auth in [
            ("Authorization", format!("Bearer {wrong}")),
            ("Authorization", "Bearer".to_owned()),
            ("Authorization", format!("Basic {}", bridge.token)),
            ("X-API-Key", wrong.clone()),
            ("X-API-Key", format!("{}x", bridge.token)),
            ("X-API-Key", bridge.token[..bridge.token.len() - 1].to_owned()),
            ("X-API-Key", String::new()),
        ] {
            let response = with(&[(auth.0, &auth.1)]);
            response.expect_error(401);
            assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{method} {path} {auth:?}");
        }
    }
    assert_eq!(env.server_pids().len(), 1, "a refused /daemon/stop stops nothing");
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 0, "a refused /execute runs nothing");

    // Both headers carry the token.
    let bearer = bridge.bearer();
    for auth in [("Authorization", bearer.as_str()), ("X-API-Key", bridge.token.as_str())] {
        assert_eq!(bridge.request("GET", "/status", &[auth], None).expect(200)["running"], true);
        let body = br#"{"command_name": "echo", "args": ["via header"]}"#;
        let result = bridge.request("POST", "/execute", &[auth, ("Content-Type", "application/json")], Some(body));
        assert_eq!(result.expect(200)["output"], "via header\n");
    }
}

#[test]
fn a_foreign_host_is_forbidden() {
    let (_env, bridge) = bridge();
    let port = bridge.addr.rsplit_once(':').map(|(_, p)| p).expect("port");
    let bearer = bridge.bearer();
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("192.168.1.5:{port}"),
    ] {
        for path in ["/health", "/"] {
            let message = bridge.request("GET", path, &[("Host", &host)], None).expect_error(403);
            assert!(message.contains("Host"), "{message}");
        }
        // Even with the token: a rebinding page could have it no other way, but the Host check
        // comes first.
        bridge.request("GET", "/status", &[("Host", &host), ("Authorization", &bearer)], None).expect_error(403);
        let body = br#"{"command_name": "hello"}"#;
        let headers = [("Host", host.as_str()), ("Authorization", &bearer), ("Content-Type", "application/json")];
        bridge.request("POST", "/execute", &headers, Some(body)).expect_error(403);
    }
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 0, "nothing ran");

    // The loopback names are fine.
    for host in [format!("localhost:{port}"), "localhost".to_owned(), format!("127.0.0.1:{port}"), "[::1]".to_owned()] {
        bridge.request("GET", "/health", &[("Host", &host)], None).expect(200);
    }
}

#[test]
fn a_post_that_is_not_json_is_refused() {
    let (_env, bridge) = bridge();
    // A page may send a "simple" cross-origin POST with these types, without a preflight: the
    // original daemon ran such a body.
    let body = br#"{"command_name": "echo", "args": ["csrf"]}"#;
    for content_type in
        ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data"]
    {
        for path in ["/execute", "/rpc"] {
            let message = bridge.post_raw(path, content_type, body).expect_error(415);
            assert!(message.contains("application/json"), "{message}");
        }
    }
    // No Content-Type at all.
    let headers = [("Authorization", bridge.bearer())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    bridge.request("POST", "/execute", &headers, Some(body)).expect_error(415);
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 0, "nothing ran");

    // With a charset parameter, JSON is JSON.
    let result = bridge.post_raw("/execute", "application/json; charset=utf-8", body).expect(200);
    assert_eq!(result["output"], "csrf\n");
}

#[test]
fn no_cors_for_a_preflight_or_anything_else() {
    let (_env, bridge) = bridge();
    let origin = ("Origin", "http://evil.example");
    for path in ["/execute", "/rpc", "/daemon/stop"] {
        let preflight = [
            origin,
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type, x-api-key"),
        ];
        let response = bridge.request("OPTIONS", path, &preflight, None);
        // `send` asserts that no Access-Control-* header came; the preflight is not a success
        // either (a preflight carries no token, so the answer is 401, or 405 for the method).
        assert!(matches!(response.status, 401 | 405), "OPTIONS {path}: {response:?}");
    }
    let response = bridge.request("OPTIONS", "/health", &[origin, ("Access-Control-Request-Method", "GET")], None);
    assert_eq!(response.status, 405, "{response:?}");

    // Nor on the answers a page could otherwise read.
    let bearer = bridge.bearer();
    bridge.request("GET", "/", &[origin], None).expect(200);
    bridge.request("GET", "/health", &[origin], None).expect(200);
    bridge.request("GET", "/status", &[origin, ("Authorization", &bearer)], None).expect(200);
    bridge.request("GET", "/status", &[origin], None).expect_error(401);
    let headers = [origin, ("Authorization", &bearer), ("Content-Type", "application/json")];
    bridge.request("POST", "/execute", &headers, Some(br#"{"command": "hello"}"#)).expect(200);
}

#[test]
fn a_body_over_one_mib_is_refused() {
    let (_env, bridge) = bridge();
    // Exactly the limit: valid JSON padded with trailing spaces.
    let mut body = br#"{"command_name": "echo", "args": ["at the limit"]}"#.to_vec();
    body.resize(MAX_BODY, b' ');
    assert_eq!(bridge.post_raw("/execute", "application/json", &body).expect(200)["output"], "at the limit\n");

    // One byte more.
    body.push(b' ');
    let response = bridge.post_raw("/execute", "application/json", &body);
    assert_eq!(response.status, 413, "{response:?}");
    let response = bridge.post_raw("/rpc", "application/json", &body);
    assert_eq!(response.status, 413, "{response:?}");

    // Far more, as one argument.
    let big = json!({"command_name": "echo", "args": ["x".repeat(4 * MAX_BODY)]});
    let response = bridge.post("/execute", &big);
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 1, "only the first ran");
}

#[test]
fn a_body_over_one_mib_gets_a_json_error() {
    let (_env, bridge) = bridge();
    let mut body = br#"{"command_name": "echo"}"#.to_vec();
    body.resize(MAX_BODY + 1, b' ');
    let message = bridge.post_raw("/execute", "application/json", &body).expect_error(413);
    assert!(!message.is_empty());
}

#[test]
fn bad_bodies_are_400() {
    let (_env, bridge) = bridge();
    for body in [&b"{\"command_name\": "[..], b"", b"not json", b"{'command_name': 'hello'}"] {
        let message = bridge.post_raw("/execute", "application/json", body).expect_error(400);
        assert!(message.contains("not valid JSON"), "{message}");
        let message = bridge.post_raw("/rpc", "application/json", body).expect_error(400);
        assert!(message.contains("not valid JSON"), "{message}");
    }

    let message = bridge.post("/execute", &json!({"command_name": "echo", "args": "a b"})).expect_error(400);
    assert!(message.contains("`args` must be a list"), "{message}");
    for body in [
        json!({"command_name": "echo", "args": 3}),
        json!({"command_name": "echo", "args": {"a": "b"}}),
        json!({"command_name": "echo", "args": ["a", 1]}),
        json!({"command_name": "echo", "timeout": "soon"}),
        json!({"args": ["no command"]}),
        json!({"command_name": 5}),
        json!(["echo"]),
        json!("echo"),
    ] {
        bridge.post("/execute", &body).expect_error(400);
    }
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 0, "nothing ran");
}

#[test]
fn an_unknown_command_is_404() {
    let (_env, bridge) = bridge();
    let response = bridge.post("/execute", &json!({"command_name": "helo", "args": []}));
    let message = response.expect_error(404);
    assert!(message.contains("unknown command `helo`"), "{message}");
    let body = response.json();
    assert_eq!(body["detail"]["code"], -32001, "{body}");
    assert_eq!(body["detail"]["data"]["suggestions"], json!(["hello"]), "{body}");
    bridge.post("/execute", &json!({"command": "no-such-command"})).expect_error(404);
}

#[test]
fn an_unknown_path_is_404() {
    let (_env, bridge) = bridge();
    for path in ["/nope", "/execute/", "/daemon", "/daemon/restart", "/status/x", "/api/execute"] {
        bridge.get_open(path).expect_error(404);
        bridge.get(path).expect_error(404);
    }
    bridge.post("/nope", &json!({})).expect_error(404);
    // A known path with another method is 405.
    assert_eq!(bridge.get("/execute").status, 405);
    assert_eq!(bridge.post("/health", &json!({})).status, 405);
}

#[test]
fn a_busy_server_answers_503() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nmax_concurrent_commands = 1\n[server]\nmax_queued_commands = 0\n");
    let bridge = start(&env, &["--http"]);
    let child = env.client_cmd(&["-q", "sleep", "60"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let running = KillOnDrop(Some(child.expect("spawn mcli-client")));
    let status = wait_active(&bridge, 1);
    assert_eq!(status["active_commands"][0]["command"], "sleep", "{status}");

    let response = bridge.post("/execute", &json!({"command_name": "echo", "args": ["refused"]}));
    let message = response.expect_error(503);
    assert!(message.contains("server busy"), "{message}");
    assert_eq!(response.json()["detail"]["code"], -32002);

    // Once the running command ends, the bridge runs commands again.
    assert_eq!(running.interrupt_and_wait().code, Some(130));
    wait_active(&bridge, 0);
    assert_eq!(bridge.execute(json!({"command_name": "echo", "args": ["again"]}))["output"], "again\n");
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let (_env, bridge) = bridge();
    for scheme in ["bearer", "BEARER"] {
        let auth = format!("{scheme} {}", bridge.token);
        bridge.request("GET", "/status", &[("Authorization", &auth)], None).expect(200);
    }
}

/// A non-loopback IPv4 address of this machine (of the interface with a route out), if any.
fn own_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[test]
fn a_wildcard_bind_accepts_the_address_a_client_reached() {
    let Some(ip) = own_address() else {
        eprintln!("SKIPPED a_wildcard_bind_accepts_the_address_a_client_reached: no non-loopback address");
        return;
    };
    let env = TestEnv::new();
    let bridge = start(&env, &["--http", "0.0.0.0:0"]);
    let port = bridge.addr.rsplit_once(':').map(|(_, p)| p.to_owned()).expect("port");
    // A client on another machine connects to `ip` and names it in `Host`: no DNS name, so no
    // rebinding, and the token is still required.
    let remote = Bridge { addr: format!("{ip}:{port}"), token: bridge.token.clone() };
    remote.get_open("/health").expect(200);
    remote.get_open("/status").expect_error(401);
    remote.get("/status").expect(200);
}

// ---------------------------------------------------------------------------------------------
// 3. The config.

#[test]
fn enabled_in_the_config_serves_the_configured_port() {
    let env = TestEnv::new();
    let port = free_port();
    write_config(&env, &format!("[api_daemon]\nenabled = true\nport = {port}\nuse_random_port = false\n"));
    env.server(&["start"]).expect_code(0);
    let bridge = Bridge::of(&env);
    assert_eq!(bridge.addr, format!("127.0.0.1:{port}"));
    assert_eq!(bridge.get_open("/health").expect(200)["status"], "healthy");
    assert_eq!(bridge.get("/status").expect(200)["config"]["api_daemon"]["port"], port);
    bridge.get_open("/status").expect_error(401);
}

#[test]
fn without_enabled_or_http_there_is_no_bridge() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    assert_eq!(env.server_file("server")["http"], Value::Null);
}

#[test]
fn an_on_demand_server_serves_http_only_with_auto_start() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nenabled = true\n");
    assert_eq!(env.client(&["-q", "hello"]).expect_code(0).stdout, "Hello World!\n");
    let file = env.server_file("server");
    assert_eq!(file["http"], Value::Null, "an on-demand server without auto_start: {file}");

    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nenabled = true\nauto_start = true\n");
    assert_eq!(env.client(&["-q", "hello"]).expect_code(0).stdout, "Hello World!\n");
    let bridge = Bridge::of(&env);
    assert!(bridge.addr.starts_with("127.0.0.1:"), "{}", bridge.addr);
    assert_eq!(bridge.get_open("/health").expect(200)["status"], "healthy");
    assert_eq!(bridge.execute(json!({"command_name": "echo", "args": ["on demand"]}))["output"], "on demand\n");
}

#[test]
fn require_token_false_on_loopback_needs_no_token() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nrequire_token = false\n");
    let bridge = start(&env, &["--http"]);
    assert_eq!(bridge.get_open("/status").expect(200)["running"], true);
    assert!(bridge.get_open("/commands").expect(200)["total"].as_u64().is_some_and(|n| n >= 5));
    let body = br#"{"command_name": "echo", "args": ["no token"]}"#;
    let result = bridge.request("POST", "/execute", &[("Content-Type", "application/json")], Some(body)).expect(200);
    assert_eq!(result["output"], "no token\n");
    // The other checks stay on.
    bridge.request("GET", "/status", &[("Host", "evil.example")], None).expect_error(403);
    bridge.request("POST", "/execute", &[("Content-Type", "text/plain")], Some(body)).expect_error(415);
}

#[test]
fn require_token_false_still_refuses_a_cross_site_stop() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nrequire_token = false\n");
    let bridge = start(&env, &["--http"]);
    let pid = server_pid(&env);
    // What a page on any site can send with `fetch(url, {method: "POST", mode: "no-cors"})`: the
    // browser names the loopback address in `Host`, and a simple request has no preflight.
    let headers = [("Origin", "http://evil.example"), ("Content-Type", "text/plain")];
    for path in ["/daemon/stop", "/daemon/start"] {
        let response = bridge.request("POST", path, &headers, Some(b""));
        assert!(matches!(response.status, 403 | 415), "{path}: {response:?}");
    }
    assert!(!process_gone(pid), "a cross-site page stopped the server");
}

#[test]
fn require_token_false_off_loopback_refuses_to_start() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nenabled = true\nhost = \"0.0.0.0\"\nrequire_token = false\n");
    for args in [&["start"][..], &["start", "--http"], &["start", "--foreground"]] {
        let run = env.server(args);
        run.expect_code(1);
        assert!(run.stderr.contains("require_token = false") && run.stderr.contains("loopback"), "{args:?}: {run:?}");
        wait_until("no server runs", || env.server_pids().is_empty());
    }
    assert!(!env.runtime_dir.join("server.json").exists());

    // A client that would start one on demand does not start one serving HTTP either.
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nenabled = true\nauto_start = true\nhost = \"0.0.0.0\"\nrequire_token = false\n");
    let run = env.client(&["-q", "hello"]);
    run.expect_code(69);
    assert!(run.stderr.contains("loopback"), "{run:?}");
    wait_until("no server runs", || env.server_pids().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 4. The original's Python client.

#[test]
fn the_original_python_client_works() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED the_original_python_client_works: python3 is not installed");
        return;
    }
    let (_env, bridge) = bridge();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/original_client.py");
    // python3 gets the test's own environment (a pyenv shim needs its HOME), plus the URL.
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(bridge.url()).env("MCLI_TOKEN", &bridge.token).stdin(Stdio::null());
    let run = Run::of(&mut cmd);
    run.expect_code(0);
    assert_eq!(run.stdout.lines().last(), Some("ok"), "{run:?}");

    // A wrong token fails it.
    let mut cmd = Command::new("python3");
    cmd.arg(&script).env("MCLI_HTTP_URL", bridge.url()).env("MCLI_TOKEN", "wrong").stdin(Stdio::null());
    let run = Run::of(&mut cmd);
    run.expect_code(1);
    assert!(run.stderr.contains("401"), "{run:?}");
}

#[test]
fn execute_keeps_binary_output_and_stderr() {
    let env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("binary");
    std::fs::write(&script, "#!/bin/sh\nprintf '\\377\\376'\necho warn >&2\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bridge = start(&env, &["--http"]);
    let result = bridge.execute(json!({"command_name": "binary"}));
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["output"], "", "{result}");
    assert_eq!(result["output_b64"], "//4=", "{result}");
    assert_eq!(result["stderr"], "warn\n", "{result}");
}

#[test]
fn a_client_that_hangs_up_mid_execute_ends_the_command_and_it_is_recorded() {
    let env = TestEnv::new();
    let commands = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&commands).expect("create the commands dir");
    let pid_file = env.root.path().join("pid");
    let script = commands.join("linger");
    std::fs::write(&script, format!("#!/bin/sh\necho $$ > '{}'\nexec sleep 60\n", pid_file.display())).expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let bridge = start(&env, &["--http"]);

    let mut stream = TcpStream::connect(&bridge.addr).expect("connect");
    let body = json!({"command_name": "linger"}).to_string();
    let head = format!(
        "POST /execute HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        bridge.addr,
        bridge.bearer(),
        body.len()
    );
    stream.write_all((head + &body).as_bytes()).expect("send the request");
    wait_active(&bridge, 1);
    wait_until("the script wrote its pid", || std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n')));
    let pid: u32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("a pid");
    drop(stream);

    wait_active(&bridge, 0);
    wait_until("the command's process is gone", || process_gone(pid));
    // The row is committed just after the command leaves the active list.
    let mut history = Value::Null;
    wait_until("the call is in the history", || {
        history = bridge.get("/history?command=linger").expect(200);
        history["entries"].as_array().is_some_and(|e| !e.is_empty())
    });
    assert_eq!(history["entries"][0]["status"], "cancelled", "{history}");
    assert_eq!(history["entries"][0]["transport"], "http", "{history}");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_closed() {
    let (_env, bridge) = bridge();
    let mut stream = TcpStream::connect(&bridge.addr).expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").expect("send half a request");
    // The bridge's header-read timeout is 10 s; the read ends with the connection closed.
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest);
    assert!(read.is_ok(), "the connection was not closed within {WAIT:?}: {read:?}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(5), "closed after {:?}", started.elapsed());
    // And the bridge goes on serving.
    assert_eq!(bridge.get_open("/health").expect(200)["status"], "healthy");
}

// ---------------------------------------------------------------------------------------------
// 3. Requests that are ambiguous, and clients that hold connections without finishing a request.

/// How long the bridge waits for a body once its headers are in
/// (`mcli_server::transport::http::BODY_READ_TIMEOUT`).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The bridge's bound on connections from one client address
/// (`mcli_server::transport::http::MAX_PER_ADDRESS`).
const MAX_PER_ADDRESS: usize = 256;

/// A connection to the bridge, with the test's time limits on reads and writes.
fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    stream
}

/// Reads one response from a connection that stays open: its head, then as many body bytes as
/// its `Content-Length` says.
fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).expect("read the response head");
        assert_eq!(read, 1, "the connection closed mid-response: {:?}", String::from_utf8_lossy(&raw));
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse::<usize>().expect("Content-Length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read the response body");
    raw.extend_from_slice(&body);
    Response::parse(&raw)
}

/// Whether the server has closed `stream`, waiting for it up to [`WAIT`].
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// The head of a POST to `/execute` with the token, whose body is to be `length` bytes.
fn execute_head(bridge: &Bridge, length: &str) -> String {
    format!(
        "POST /execute HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        bridge.addr,
        bridge.bearer()
    )
}

#[test]
fn a_declared_body_over_one_mib_is_refused_before_it_arrives() {
    let (_env, bridge) = bridge();
    let too_large = (MAX_BODY + 1).to_string();
    for length in ["99999999999", "2097152", too_large.as_str()] {
        // The headers alone: no byte of the body is ever sent.
        let started = Instant::now();
        let response = send(&bridge.addr, execute_head(&bridge, length).as_bytes());
        let message = response.expect_error(413);
        assert!(message.contains("over the limit of 1048576 bytes") && message.contains(length), "{message}");
        assert!(started.elapsed() < BODY_READ_TIMEOUT / 2, "answered after {:?}", started.elapsed());
    }
    // Without the token, on an endpoint that reads no body, and announced with `Expect`.
    let head = format!(
        "POST /rpc HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n",
        bridge.addr
    );
    assert!(send(&bridge.addr, head.as_bytes()).expect_error(413).contains("99999999999"));
    let head = format!("GET /health HTTP/1.1\r\nHost: {}\r\nContent-Length: 2097152\r\n\r\n", bridge.addr);
    send(&bridge.addr, head.as_bytes()).expect_error(413);
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 0, "nothing ran");
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_408() {
    let (_env, bridge) = bridge();
    let mut stream = connect(&bridge.addr);
    let started = Instant::now();
    stream.write_all((execute_head(&bridge, "1000") + "{").as_bytes()).expect("send the headers and `{`");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("the answer, then the connection closed");
    let elapsed = started.elapsed();
    let message = Response::parse(&raw).expect_error(408);
    assert!(message.contains("did not arrive within 10 s"), "{message}");
    assert!(elapsed >= BODY_READ_TIMEOUT / 2 && elapsed < WAIT, "answered after {elapsed:?}");
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 0, "nothing ran");
}

#[test]
fn a_request_that_names_two_hosts_or_two_media_types_is_400() {
    let (_env, bridge) = bridge();
    let host = bridge.addr.as_str();
    for hosts in [[host, host], [host, "evil.example"], ["evil.example", host]] {
        let message =
            bridge.request("GET", "/health", &[("Host", hosts[0]), ("Host", hosts[1])], None).expect_error(400);
        assert!(message.contains("more than one `Host` header"), "{message}");
    }
    let bearer = bridge.bearer();
    let body = br#"{"command_name": "echo", "args": ["twice"]}"#;
    for second in ["application/json", "text/plain"] {
        let headers =
            [("Authorization", bearer.as_str()), ("Content-Type", "application/json"), ("Content-Type", second)];
        let message = bridge.request("POST", "/execute", &headers, Some(body)).expect_error(400);
        assert!(message.contains("more than one `Content-Type` header"), "{message}");
    }
    assert_eq!(bridge.get("/status").expect(200)["command_history_count"], 0, "nothing ran");
}

#[test]
fn an_absolute_target_must_name_this_machine() {
    let (_env, bridge) = bridge();
    let get = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", bridge.addr);
        send(&bridge.addr, request.as_bytes())
    };
    for (target, host) in [
        ("http://evil.example/health", "evil.example"),
        ("http://evil.example:8000/health", "evil.example"),
        ("http://127.0.0.1@evil.example/health", "evil.example"),
        ("http://192.168.1.5/", "192.168.1.5"),
    ] {
        let message = get(target).expect_error(400);
        assert!(
            message.contains(&format!("names host `{host}`")) && message.contains("send the path alone"),
            "{message}"
        );
    }
    // This machine, named in the target, is served.
    for target in [format!("http://{}/health", bridge.addr), "http://localhost/health".to_owned()] {
        assert_eq!(get(&target).expect(200)["status"], "healthy", "{target}");
    }
}

#[test]
fn history_refuses_an_unknown_query_key() {
    let (_env, bridge) = bridge();
    for (path, key) in [("/history?limt=5", "limt"), ("/history?command=hello&cursor=9", "cursor"), ("/history?x", "x")]
    {
        let message = bridge.get(path).expect_error(400);
        assert!(message.contains(&format!("unknown query key `{key}`")), "{path}: {message}");
        assert!(message.contains("`limit`, `command`, `failed`"), "{path}: {message}");
    }
    let message = bridge.get("/history?limit=1&limit=2").expect_error(400);
    assert!(message.contains("at most once"), "{message}");
    assert_eq!(bridge.get("/history?limit=1").expect(200)["entries"], json!([]));
}

#[test]
fn an_address_over_its_bound_gives_up_its_idlest_connection() {
    let (_env, bridge) = bridge();
    raise_descriptor_limit(MAX_PER_ADDRESS + 64);
    // The first connection answers a request and stays open: from then on it is the idlest.
    let mut first = connect(&bridge.addr);
    let health = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", bridge.addr);
    first.write_all(health.as_bytes()).expect("send a request");
    read_response(&mut first).expect(200);
    // Then the address's bound fills up with connections that send nothing.
    let silent: Vec<TcpStream> = (1..MAX_PER_ADDRESS).map(|_| connect(&bridge.addr)).collect();
    // One more is served, and the idlest is closed to make room.
    let mut last = connect(&bridge.addr);
    last.write_all(health.as_bytes()).expect("send a request");
    read_response(&mut last).expect(200);
    assert!(closed_by_server(&mut first), "the idlest connection was not closed");
    // The others are left alone: the newest goes on serving.
    last.write_all(health.as_bytes()).expect("send another request");
    read_response(&mut last).expect(200);
    drop(silent);
}

#[test]
fn an_address_whose_connections_are_all_busy_is_refused_with_503() {
    let env = TestEnv::new();
    // One command runs and the rest of the address's connections wait in the queue, busy.
    write_config(&env, "[api_daemon]\nmax_concurrent_commands = 1\n[server]\nmax_queued_commands = 1000\n");
    let bridge = start(&env, &["--http"]);
    raise_descriptor_limit(MAX_PER_ADDRESS + 64);
    let body = json!({"command_name": "sleep", "args": ["60"]}).to_string();
    let busy: Vec<TcpStream> = (0..MAX_PER_ADDRESS)
        .map(|_| {
            let mut stream = connect(&bridge.addr);
            stream.write_all((execute_head(&bridge, &body.len().to_string()) + &body).as_bytes()).expect("send");
            stream
        })
        .collect();
    // The server's status over its socket: a connection to the bridge would be one more.
    wait_until("every connection has a request in progress", || {
        let status = env.status_json();
        status["active_commands"].as_array().is_some_and(|a| a.len() == 1)
            && status["queued"] == (MAX_PER_ADDRESS - 1) as u64
    });

    let response = bridge.get_open("/health");
    let message = response.expect_error(503);
    assert!(
        message.contains(
            "this address has 256 HTTP connections, all with a request in progress; retry when one has finished"
        ),
        "{message}"
    );
    assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");

    // A connection whose request ends makes room again.
    drop(busy);
    wait_until("the calls of the closed connections have ended", || {
        let status = env.status_json();
        status["queued"] == 0 && status["active_commands"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(bridge.get_open("/health").expect(200)["status"], "healthy");
}

/// Raises this process's soft limit on open descriptors to hold `needed` connections at once.
fn raise_descriptor_limit(needed: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let wanted = (needed as u64 + 64).max(soft);
    assert!(wanted <= hard, "this test holds {needed} connections: raise the hard limit on open files (ulimit -Hn)");
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("setrlimit");
}

/// The flood's connections: a third send nothing, a third half of their headers, and a third
/// their headers (with the token) and `{` of a 1000-byte body.
fn flood_connection(bridge: &Bridge, n: usize) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(&bridge.addr).ok()?;
    let start = match n % 3 {
        0 => String::new(),
        1 => format!("GET /health HTTP/1.1\r\nHost: {}\r\n", bridge.addr),
        _ => execute_head(bridge, "1000") + "{",
    };
    // A connection the server has closed already is still part of the flood.
    let _ = stream.write_all(start.as_bytes());
    Some(stream)
}

/// The time of `GET /health` on a new connection, from connect to the whole answer.
fn time_health(bridge: &Bridge) -> Duration {
    let started = Instant::now();
    assert_eq!(bridge.get_open("/health").expect(200)["status"], "healthy");
    started.elapsed()
}

#[test]
fn a_flood_of_idle_connections_does_not_delay_other_clients() {
    const FLOOD: usize = 1500;
    const SAMPLES: usize = 200;
    let (env, bridge) = bridge();
    raise_descriptor_limit(FLOOD + 64);
    let unflooded: Vec<Duration> = (0..20).map(|_| time_health(&bridge)).collect();

    // The flood opens its connections while the other client's requests are timed, and holds
    // them until the timing ends.
    let opened = Arc::new(AtomicUsize::new(0));
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let flood = {
        let (opened, flooder) = (Arc::clone(&opened), Bridge::of(&env));
        std::thread::spawn(move || {
            let mut held = Vec::with_capacity(FLOOD);
            for n in 0..FLOOD {
                held.extend(flood_connection(&flooder, n));
                opened.store(n + 1, Ordering::Relaxed);
            }
            // Until the timing ends, or the test fails (the sender is dropped).
            let _ = wait_done.recv();
            held.len()
        })
    };
    wait_until("the flood has begun", || opened.load(Ordering::Relaxed) >= 100);
    // Timed while the flood opens its connections, then as many again while it holds them all.
    let mut samples = Vec::new();
    for step in 1..(FLOOD - 100) / 10 {
        wait_until("the flood goes on", || opened.load(Ordering::Relaxed) >= 100 + step * 10);
        samples.push(time_health(&bridge));
    }
    let while_opening = samples.len();
    samples.extend((0..SAMPLES).map(|_| time_health(&bridge)));
    let _ = done.send(());
    let held = flood.join().expect("the flood thread");
    assert_eq!(held, FLOOD, "the flood could not open its connections");

    samples.sort_unstable();
    let quantile = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let (p50, p99, max) = (quantile(0.5), quantile(0.99), samples[samples.len() - 1]);
    eprintln!(
        "GET /health under a flood of {FLOOD} idle connections ({while_opening} requests while it opened them, \
         {SAMPLES} while it held them): p50 {p50:?}, p99 {p99:?}, max {max:?}; without the flood: max {:?}",
        unflooded.iter().max().copied().unwrap_or_default()
    );
    // The goal is a p99 under 100 ms; the bound asserted leaves room for a loaded 2-core machine
    // running a debug build (before the bounds, the median was 9.9 s).
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?} under the flood (p50 {p50:?}, max {max:?})");
    assert_eq!(env.server_pids().len(), 1, "the server is still running");
}

#[test]
fn an_open_endpoint_answers_without_waiting_for_a_body_it_does_not_take() {
    let (_env, bridge) = bridge();
    // Headers that promise a large body, and only a few bytes of it: no token, so the bridge
    // must not wait for (and hold) the rest before it answers.
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n{{}}",
        bridge.addr
    );
    let started = std::time::Instant::now();
    let response = send(&bridge.addr, request.as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered at once: {:?}", started.elapsed());
}
