//! What one peer can cost the server, measured on the real binaries: a batch runs at most 64
//! members within its connection's bound on requests in flight, a reply is at most 16 MiB (a
//! batch's members share that), `history` answers in pages, and a connection over the limit of
//! 2048 is told the server is busy, which `mcli-client` reports as exit status 75.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use mcli_tests::{RawConn, TestEnv, WAIT, wait_until};
use serde_json::{Value, json};

/// The server's limits (`MAX_BATCH` and `MAX_REPLY` in `transport/dispatch.rs`, `MAX_PAGE` in
/// `methods/history.rs`, `MAX_CONNECTIONS` in `transport/socket.rs` and `tcp.rs`).
const MAX_BATCH: usize = 64;
const MAX_REPLY: usize = 16 * 1024 * 1024;
const MAX_PAGE: usize = 1000;
const MAX_CONNECTIONS: usize = 2048;

/// The message `mcli-client` prints for a connection over the limit.
const BUSY: &str = "mcli-client: server busy: too many connections (limit 2048); try again later\n";

fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// `count` copies of `member` with ids 0.., as one batch line.
fn batch(count: usize, member: impl Fn(usize) -> Value) -> Vec<u8> {
    let mut line = Value::Array((0..count).map(member).collect()).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in the status of {pid}"))
}

/// Fills the history with `rows` executions of `echo` with a 1 KiB argument: one run for real,
/// then copies of its row with ids of their own (far above the ids the server hands out).
fn fill_history(env: &TestEnv, rows: usize) {
    let mut conn = RawConn::connect(&env.socket("server"));
    let arg = "x".repeat(1024);
    let line = request(json!(1), "execute", json!({"command": "echo", "args": [arg], "stream": false}));
    conn.send(format!("{line}\n").as_bytes());
    let reply = conn.read_json_line();
    assert_eq!(reply["result"]["status"], "completed", "{reply}");

    let path = env.state_home.join("mcli/server-history.sqlite3");
    let mut db = rusqlite::Connection::open(&path).expect("open the history");
    db.busy_timeout(WAIT).expect("busy timeout");
    let tx = db.transaction().expect("begin");
    tx.execute_batch("CREATE TEMP TABLE one AS SELECT * FROM executions ORDER BY id DESC LIMIT 1")
        .expect("copy the row");
    {
        let mut renumber = tx.prepare("UPDATE temp.one SET id = ?1").expect("prepare");
        let mut insert = tx.prepare("INSERT INTO executions SELECT * FROM temp.one").expect("prepare");
        for id in 0..rows as i64 {
            renumber.execute([1_000_000 + id]).expect("renumber");
            insert.execute([]).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

#[test]
fn a_batch_of_large_history_calls_is_bounded_and_answered() {
    let mut env = TestEnv::new();
    let (pid, _) = env.foreground_server(&[]);
    fill_history(&env, 10_000);
    let mut conn = RawConn::connect(&env.socket("server"));
    let history = |id: usize| request(json!(id), "history", json!({"limit": 10_000}));

    // The battery's message: 200 calls in one batch. Refused whole; nothing runs.
    let rss_before = memory_kib(pid, "VmRSS");
    conn.send(&batch(200, history));
    let reply = conn.read_json_line();
    assert_eq!(reply["id"], Value::Null, "{reply}");
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("batch of 200") && message.contains(&format!("limit of {MAX_BATCH}")), "{message}");

    // The largest batch allowed: every member answers, with a page that fits its share.
    conn.send(&batch(MAX_BATCH, history));
    let mut text = String::new();
    let mut reader = BufReader::new(UnixStream::connect(env.socket("server")).expect("connect"));
    reader.get_mut().write_all(&batch(MAX_BATCH, history)).expect("send the batch again");
    reader.read_line(&mut text).expect("read the batch reply");
    assert!(text.len() <= MAX_REPLY + 1, "a reply of {} bytes", text.len());
    for reply in [conn.read_json_line(), serde_json::from_str(&text).expect("JSON")] {
        let replies = reply.as_array().unwrap_or_else(|| panic!("not an array: {reply}"));
        assert_eq!(replies.len(), MAX_BATCH);
        for (i, member) in replies.iter().enumerate() {
            assert_eq!(member["id"], i, "replies keep the order of the requests");
            let entries = member["result"]["entries"].as_array().unwrap_or_else(|| panic!("{member}"));
            assert!(!entries.is_empty() && entries.len() < MAX_PAGE, "{} entries", entries.len());
            assert_eq!(entries[0]["id"], 1_009_999, "newest first");
        }
    }
    let (rss_after, peak) = (memory_kib(pid, "VmRSS"), memory_kib(pid, "VmHWM"));
    eprintln!("server memory: {rss_before} KiB before, {rss_after} KiB after, peak {peak} KiB");
    assert!(peak < rss_before + 128 * 1024, "the server grew from {rss_before} KiB to a peak of {peak} KiB");

    // The connection goes on.
    conn.send(format!("{}\n", request(json!("h"), "health", json!({}))).as_bytes());
    assert_eq!(conn.read_json_line()["result"]["status"], "healthy");
}

#[test]
fn history_answers_in_pages_that_before_continues() {
    let mut env = TestEnv::new();
    env.foreground_server(&[]);
    fill_history(&env, 2_500);
    let mut conn = RawConn::connect(&env.socket("server"));
    let mut page = |id: u64, params: Value| {
        conn.send(format!("{}\n", request(json!(id), "history", params)).as_bytes());
        let reply = conn.read_json_line();
        let entries = reply["result"]["entries"].as_array().unwrap_or_else(|| panic!("{reply}")).clone();
        entries.iter().map(|e| e["id"].as_u64().unwrap_or_else(|| panic!("{e}"))).collect::<Vec<u64>>()
    };

    // `limit` keeps its meaning up to the page size; past it, a page is cut by its bytes.
    assert_eq!(page(1, json!({})).len(), 50, "the default limit");
    assert_eq!(page(2, json!({"limit": 3})), vec![1_002_499, 1_002_498, 1_002_497]);
    let first = page(3, json!({"limit": 10_000}));
    assert!(first.len() > 500 && first.len() <= MAX_PAGE, "a page of {} entries", first.len());

    // Every row comes once, newest first, page after page.
    let mut seen = first.clone();
    while let Some(&last) = seen.last() {
        let next = page(4, json!({"limit": 10_000, "before": last}));
        if next.is_empty() {
            break;
        }
        assert!(next[0] < last, "the next page starts below the cursor");
        seen.extend(next);
    }
    assert_eq!(seen.len(), 2_501, "the rows copied and the one run");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no row twice");
}

#[test]
fn a_reply_over_its_share_of_a_batch_is_an_error_that_names_the_limit() {
    let mut env = TestEnv::new();
    env.foreground_server(&[]);
    let mut conn = RawConn::connect(&env.socket("server"));
    // 300 KiB of output, captured into the result: over a 64-member batch's share.
    let big = "y".repeat(300 * 1024);
    let echo = |id: Value| request(id, "execute", json!({"command": "echo", "args": [big], "stream": false}));
    conn.send(&batch(MAX_BATCH, |i| if i == 0 { echo(json!(0)) } else { request(json!(i), "health", json!({})) }));
    let reply = conn.read_json_line();
    let replies = reply.as_array().unwrap_or_else(|| panic!("not an array: {reply}"));
    let share = (MAX_REPLY - 1 - MAX_BATCH) / MAX_BATCH;
    assert_eq!(replies[0]["id"], 0, "{}", replies[0]);
    assert_eq!(replies[0]["error"]["code"], -32007, "{}", replies[0]);
    let message = replies[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("over the limit of {share} bytes")), "{message}");
    assert!(message.contains("batch") && message.contains("stream"), "{message}");
    assert!(replies[1..].iter().all(|r| r["result"]["status"] == "healthy"), "the other members answer");

    // On its own, the same call fits.
    conn.send(format!("{}\n", echo(json!("alone"))).as_bytes());
    let reply = conn.read_json_line();
    assert_eq!(reply["result"]["stdout"].as_str().map(str::len), Some(big.len() + 1), "{}", reply["error"]);
}

/// Raises this process's limit of open files (the server inherits it) to hold `needed`.
fn allow_open_files(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(hard >= needed, "this test needs {needed} open files; the hard limit is {hard}");
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).expect("setrlimit");
    }
}

#[test]
fn at_the_socket_connection_limit_the_client_says_busy_and_exits_75() {
    allow_open_files(3 * MAX_CONNECTIONS as u64);
    let mut env = TestEnv::new();
    env.foreground_server(&[]);
    let socket = env.socket("server");
    let mut held: Vec<UnixStream> =
        (0..MAX_CONNECTIONS).map(|_| UnixStream::connect(&socket).expect("connect")).collect();
    // Connections are accepted in order: once one more is refused, the limit is reached.
    let mut over = RawConn::connect(&socket);
    let reply = over.read_json_line();
    assert_eq!((&reply["id"], &reply["error"]["code"]), (&Value::Null, &json!(-32002)), "{reply}");

    for _ in 0..3 {
        let run = env.client(&["hello", "busy"]);
        run.expect_code(75);
        assert_eq!(run.stderr, BUSY);
        assert_eq!(run.stdout, "");
    }

    // A freed slot serves the next client.
    held.pop();
    wait_until("a client gets a slot", || env.client(&["hello", "again"]).code == Some(0));
    drop(held);
}

#[test]
fn at_the_tcp_connection_limit_the_client_says_busy_and_exits_75() {
    allow_open_files(3 * MAX_CONNECTIONS as u64);
    let env = TestEnv::new();
    env.server(&["start", "--tcp", "127.0.0.1:0"]).expect_code(0);
    let file = env.server_file("server");
    let (addr, token) = (file["tcp"].as_str().expect("tcp").to_owned(), file["token"].as_str().expect("token"));
    let auth = format!("{}\n", request(json!(0), "authenticate", json!({"token": token})));
    // Authenticated connections hold their slots (before authentication, one is closed after 5 s).
    let mut held: Vec<BufReader<TcpStream>> = Vec::with_capacity(MAX_CONNECTIONS);
    for _ in 0..MAX_CONNECTIONS {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream.write_all(auth.as_bytes()).expect("authenticate");
        held.push(BufReader::new(stream));
    }
    for conn in &mut held {
        let mut line = String::new();
        conn.read_line(&mut line).expect("read the answer");
        assert!(line.contains(r#""result":{"ok":true}"#), "{line}");
    }

    let server_file = env.runtime_dir.join("server.json");
    let run = env.client(&["-f", server_file.to_str().expect("UTF-8 path"), "hello", "busy"]);
    run.expect_code(75);
    assert_eq!(run.stderr, BUSY);

    held.pop();
    wait_until("a client gets a slot", || {
        env.client(&["-f", server_file.to_str().unwrap_or_default(), "hello", "again"]).code == Some(0)
    });
}

/// `POST /rpc` with `body` to the HTTP bridge at `addr`; the status and the body of the answer.
fn post_rpc(addr: &str, token: &str, body: &[u8]) -> (u16, Value) {
    use std::io::Read;
    let mut stream = TcpStream::connect(addr).expect("connect to the bridge");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let head = format!(
        "POST /rpc HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).expect("send the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("end of the headers");
    let status = String::from_utf8_lossy(&answer[9..12]).parse().expect("a status");
    (status, serde_json::from_slice(&answer[split + 4..]).expect("a JSON body"))
}

#[test]
fn over_http_rpc_a_batch_has_the_same_bounds() {
    let mut env = TestEnv::new();
    let (pid, _) = env.foreground_server(&["--http", "127.0.0.1:0"]);
    fill_history(&env, 10_000);
    let file = env.server_file("server");
    let (addr, token) = (file["http"].as_str().expect("http"), file["token"].as_str().expect("token"));
    let history = |id: usize| request(json!(id), "history", json!({"limit": 10_000}));

    let rss_before = memory_kib(pid, "VmRSS");
    let (status, reply) = post_rpc(addr, token, &batch(200, history));
    assert_eq!(status, 200);
    assert_eq!(reply["error"]["code"], -32600, "{reply}");

    let (status, reply) = post_rpc(addr, token, &batch(MAX_BATCH, history));
    assert_eq!(status, 200);
    let replies = reply.as_array().unwrap_or_else(|| panic!("not an array: {reply}"));
    assert_eq!(replies.len(), MAX_BATCH);
    assert!(replies.iter().all(|r| r["result"]["entries"].as_array().is_some_and(|e| !e.is_empty())));
    let peak = memory_kib(pid, "VmHWM");
    assert!(peak < rss_before + 128 * 1024, "the server grew from {rss_before} KiB to a peak of {peak} KiB");
}

#[test]
fn a_captured_result_over_the_reply_limit_is_an_error_that_says_how_to_get_it() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new();
    env.use_config("[server]\nmax_captured_output = 20971520\n");
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).expect("create the commands dir");
    let script = dir.join("big");
    std::fs::write(&script, "#!/bin/sh\nhead -c 17000000 /dev/zero | tr '\\0' a\n").expect("write the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    env.foreground_server(&[]);

    let run = env.client(&["--json", "big"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        format!(
            "mcli-client: reply too large: the reply to `execute` is over the limit of {MAX_REPLY} bytes; the command ran and is in `history`: stream its output (`stream: true`) to get all of it\n"
        )
    );
    // Streamed, the same output comes whole.
    let run = env.client(&["big"]);
    run.expect_code(0);
    assert_eq!(run.stdout.len(), 17_000_000);
}
