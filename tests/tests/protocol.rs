//! The JSON-RPC 2.0 protocol on the local socket, byte for byte: both framings, batches, the
//! error codes, the frame limits, cancellation, notifications and concurrency between
//! connections. Every test drives a real `mcli-server` over a raw connection.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mcli_tests::{Active, RawConn, TestEnv, WAIT, wait_for_active};
use serde_json::{Value, json};

/// The default frame limit of the server (`mcli_protocol::framing::DEFAULT_MAX_FRAME`).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A fresh environment with a foreground server, and its pid.
fn server() -> (TestEnv, u32) {
    let mut env = TestEnv::new();
    let (pid, _line) = env.foreground_server(&[]);
    (env, pid)
}

fn connect(env: &TestEnv) -> RawConn {
    RawConn::connect(&env.socket("server"))
}

/// A request as one JSON text.
fn request(id: Value, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// A request framed as one line.
fn line(id: Value, method: &str, params: Value) -> Vec<u8> {
    let mut text = request(id, method, params).into_bytes();
    text.push(b'\n');
    text
}

/// A text framed with a `Content-Length` header.
fn framed(text: &str) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", text.len()).into_bytes();
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads messages until the response with `id`; returns the notifications read before it and
/// the response. Panics on a response to another request.
#[track_caller]
fn until_response(mut read: impl FnMut() -> Value, id: &Value) -> (Vec<Value>, Value) {
    let mut notifications = Vec::new();
    loop {
        let message = read();
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
        if message.get("id").is_some() {
            assert_eq!(&message["id"], id, "a response to another request: {message}");
            return (notifications, message);
        }
        assert!(message.get("method").is_some(), "neither a response nor a notification: {message}");
        notifications.push(message);
    }
}

/// Sends one request line and returns its response, asserting that no notification came first.
#[track_caller]
fn call(conn: &mut RawConn, id: Value, method: &str, params: Value) -> Value {
    conn.send(&line(id.clone(), method, params));
    let reply = conn.read_json_line();
    assert_eq!(reply["id"], id, "{reply}");
    reply
}

/// The `result` of a successful response.
#[track_caller]
fn result(reply: &Value) -> &Value {
    assert!(reply.get("error").is_none(), "unexpected error: {reply}");
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");
    reply.get("result").unwrap_or_else(|| panic!("no result: {reply}"))
}

/// Asserts an error response with `id` and `code`; returns its message.
#[track_caller]
fn error(reply: &Value, id: &Value, code: i64) -> String {
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");
    assert_eq!(&reply["id"], id, "{reply}");
    assert!(reply.get("result").is_none(), "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
    reply["error"]["message"].as_str().unwrap_or_else(|| panic!("no message: {reply}")).to_owned()
}

/// The text of the stdout notifications of `request_id`, checking their shape.
#[track_caller]
fn stdout_of(notifications: &[Value], request_id: &Value, execution: &Value) -> String {
    let mut text = String::new();
    for n in notifications {
        assert_eq!(n["method"], "mcli/output", "{n}");
        assert!(n.get("id").is_none(), "a notification has no id: {n}");
        let params = &n["params"];
        assert_eq!(&params["request_id"], request_id, "{n}");
        assert_eq!(&params["id"], execution, "{n}");
        if params["stream"] == "stdout" {
            text.push_str(params["data"].as_str().unwrap_or_else(|| panic!("no data: {n}")));
        }
    }
    text
}

#[track_caller]
fn assert_healthy(reply: &Value, id: &Value) {
    assert_eq!(&reply["id"], id, "{reply}");
    let health = result(reply);
    assert_eq!(health["status"], "healthy", "{reply}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{reply}");
    assert!(health["uptime_secs"].is_u64(), "{reply}");
}

/// Asks `status` on `conn` until a command named `command` is active.
fn wait_active(conn: &mut RawConn, command: &str) {
    let mut id = 1000u64;
    wait_for_active(Active::Named(command), || {
        id += 1;
        result(&call(conn, json!(id), "status", json!({}))).clone()
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn ndjson_session_health_status_list_and_execute() {
    let (env, pid) = server();
    let mut conn = connect(&env);

    let reply = call(&mut conn, json!(1), "health", json!({}));
    assert_healthy(&reply, &json!(1));

    let reply = call(&mut conn, json!(2), "status", json!({}));
    let status = result(&reply);
    assert_eq!(status["pid"], pid, "{reply}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["protocol"], 1);
    assert_eq!(status["socket"], env.socket("server").display().to_string());
    assert_eq!(status["running"], true);
    assert!(status["uptime_secs"].is_u64(), "{reply}");
    assert_eq!(status["active_commands"], json!([]), "{reply}");
    assert_eq!(status["queued"], 0);
    assert_eq!(status["command_history_count"], 0);
    assert_eq!(status["executed_total"], 0);
    assert_eq!(status["failed_total"], 0);
    assert!(status["config"]["api_daemon"].is_object(), "{reply}");

    let reply = call(&mut conn, json!("list"), "list", json!({}));
    let commands = result(&reply)["commands"].as_array().expect("commands").clone();
    for name in ["hello", "echo"] {
        let entry =
            commands.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("`{name}` is not listed: {reply}"));
        assert_eq!(entry["source"], "builtin", "{entry}");
        assert!(!entry["description"].as_str().unwrap_or_default().is_empty(), "{entry}");
    }

    // Streamed: the output comes as notifications, all before the response.
    conn.send(&line(json!(3), "execute", json!({"command": "hello", "args": ["World", "--verbose"]})));
    let (notes, reply) = until_response(|| conn.read_json_line(), &json!(3));
    let res = result(&reply);
    assert_eq!(res["status"], "completed", "{reply}");
    assert_eq!(res["exit_code"], 0);
    assert_eq!(res["signal"], Value::Null);
    assert_eq!(res["cached"], false);
    assert_eq!(res["command"], "hello");
    assert!(res["id"].is_u64() && res["duration_ms"].is_u64(), "{reply}");
    assert!(res.get("stdout").is_none(), "streamed output is not in the result: {reply}");
    assert!(!notes.is_empty(), "no mcli/output notification");
    assert_eq!(stdout_of(&notes, &json!(3), &res["id"]), "Hello World! (verbose mode)\n");

    // Not streamed: the output is in the result, and no notification comes.
    let reply = call(&mut conn, json!(4), "execute", json!({"command": "hello", "args": ["Bob"], "stream": false}));
    let res = result(&reply);
    assert_eq!(res["status"], "completed", "{reply}");
    assert_eq!(res["exit_code"], 0);
    assert_eq!(res["stdout"], "Hello Bob!\n");
    assert_eq!(res["stderr"], "");
    assert_eq!(res["truncated"], false);

    let reply = call(&mut conn, json!(5), "status", json!({}));
    let status = result(&reply);
    assert_eq!(status["executed_total"], 2, "{reply}");
    assert_eq!(status["failed_total"], 0, "{reply}");
}

#[test]
fn content_length_framing_session() {
    let (env, _) = server();
    let mut conn = connect(&env);

    conn.send(&framed(&request(json!(1), "list", json!({}))));
    let reply = conn.read_json_framed();
    assert_eq!(reply["id"], 1);
    let commands = result(&reply)["commands"].as_array().expect("commands").clone();
    assert!(commands.iter().any(|c| c["name"] == "hello" && c["source"] == "builtin"), "{reply}");

    // Headers other than Content-Length are allowed.
    let text = request(json!(2), "execute", json!({"command": "hello", "args": ["World", "--verbose"]}));
    let mut bytes =
        format!("Content-Length: {}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n", text.len())
            .into_bytes();
    bytes.extend_from_slice(text.as_bytes());
    conn.send(&bytes);
    let (notes, reply) = until_response(|| conn.read_json_framed(), &json!(2));
    let res = result(&reply);
    assert_eq!(res["status"], "completed", "{reply}");
    assert_eq!(res["exit_code"], 0);
    assert_eq!(stdout_of(&notes, &json!(2), &res["id"]), "Hello World! (verbose mode)\n");

    // A lower-case header name and the `\n\n` terminator some peers use are accepted too.
    let health = r#"{"jsonrpc":"2.0","id":3,"method":"health"}"#;
    conn.send(format!("content-length: {}\n\n{health}", health.len()).as_bytes());
    assert_healthy(&conn.read_json_framed(), &json!(3));
}

#[test]
fn batch_gets_one_array_of_the_responses() {
    let (env, _) = server();
    let mut conn = connect(&env);
    let batch = format!(
        "[{},{},{}]\n",
        request(json!(1), "health", json!({})),
        json!({"jsonrpc": "2.0", "method": "health"}),
        request(json!("two"), "execute", json!({"command": "echo", "args": ["a", "b"], "stream": false})),
    );
    conn.send(batch.as_bytes());
    let reply = conn.read_json_line();
    let replies = reply.as_array().unwrap_or_else(|| panic!("a batch reply is an array: {reply}"));
    assert_eq!(replies.len(), 2, "one response per request, none for the notification: {reply}");
    let by_id = |id: Value| replies.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no {id}: {reply}"));
    assert_healthy(by_id(json!(1)), &json!(1));
    let echo = result(by_id(json!("two")));
    assert_eq!(echo["status"], "completed", "{reply}");
    assert_eq!(echo["stdout"], "a b\n", "{reply}");

    // The connection goes on after a batch.
    assert_healthy(&call(&mut conn, json!(3), "health", json!({})), &json!(3));
}

#[test]
fn empty_batch_is_an_invalid_request() {
    let (env, _) = server();
    let mut conn = connect(&env);
    conn.send(b"[]\n");
    let message = error(&conn.read_json_line(), &Value::Null, -32600);
    assert!(message.contains("empty batch"), "{message}");
    assert_healthy(&call(&mut conn, json!(1), "health", json!({})), &json!(1));
}

#[test]
fn batch_that_is_not_json_is_a_parse_error() {
    let (env, _) = server();
    let mut conn = connect(&env);
    conn.send(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\"},\n");
    let message = error(&conn.read_json_line(), &Value::Null, -32700);
    assert!(message.contains("parse error"), "{message}");
    assert_healthy(&call(&mut conn, json!(2), "health", json!({})), &json!(2));
}

#[test]
fn errors_keep_the_connection_alive() {
    let (env, _) = server();
    let mut conn = connect(&env);

    conn.send(b"{this is not json}\n");
    let message = error(&conn.read_json_line(), &Value::Null, -32700);
    assert!(message.contains("parse error"), "{message}");
    assert_healthy(&call(&mut conn, json!(1), "health", json!({})), &json!(1));

    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":1}\n");
    let message = error(&conn.read_json_line(), &json!(1), -32600);
    assert!(message.contains("method"), "{message}");

    conn.send(b"{\"jsonrpc\":\"1.0\",\"id\":2,\"method\":\"health\"}\n");
    let message = error(&conn.read_json_line(), &json!(2), -32600);
    assert!(message.contains("jsonrpc"), "{message}");

    let reply = call(&mut conn, json!(3), "frobnicate", json!({}));
    let message = error(&reply, &json!(3), -32601);
    assert!(message.contains("frobnicate"), "{message}");

    let reply = call(&mut conn, json!(4), "execute", json!({"args": ["x"]}));
    let message = error(&reply, &json!(4), -32602);
    assert!(message.contains("command"), "{message}");

    let reply = call(&mut conn, json!(5), "execute", json!({"command": "hello", "argz": []}));
    let message = error(&reply, &json!(5), -32602);
    assert!(message.contains("argz"), "{message}");

    let reply = call(&mut conn, json!(6), "execute", json!({"command": "helo"}));
    let message = error(&reply, &json!(6), -32001);
    assert!(message.contains("helo") && message.contains("hello"), "{message}");
    let suggestions = reply["error"]["data"]["suggestions"].as_array().unwrap_or_else(|| panic!("{reply}"));
    assert!(suggestions.contains(&json!("hello")), "{reply}");

    let reply = call(&mut conn, json!(7), "execute", json!({"command": "hello", "protocol": 99}));
    let message = error(&reply, &json!(7), -32005);
    assert!(message.contains("protocol 99") && message.contains("protocol 1"), "{message}");

    let reply = call(&mut conn, json!(8), "execute", json!({"command": "sleep", "args": ["5"], "timeout": -1}));
    let message = error(&reply, &json!(8), -32602);
    assert!(message.contains("timeout"), "{message}");

    // A request after all of these still runs.
    let reply = call(&mut conn, json!(9), "execute", json!({"command": "hello", "stream": false}));
    assert_eq!(result(&reply)["stdout"], "Hello World!\n", "{reply}");
}

#[test]
fn over_long_line_is_refused_and_the_connection_goes_on() {
    let (env, _) = server();
    let stream = UnixStream::connect(env.socket("server")).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    // The server answers while the line is still being written.
    let writing = std::thread::spawn(move || {
        writer.write_all(br#"{"jsonrpc":"2.0","id":1,"method":"health","params":{"pad":""#)?;
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..=MAX_FRAME / chunk.len() {
            writer.write_all(&chunk)?;
        }
        writer.write_all(b"\"}}\n")?;
        writer.write_all(&line(json!(2), "health", json!({})))
    });
    let mut reader = BufReader::new(stream);
    let mut read = || {
        let mut text = String::new();
        reader.read_line(&mut text).expect("read from server");
        assert!(!text.is_empty(), "server closed the connection");
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {text:?}"))
    };
    let message = error(&read(), &Value::Null, -32600);
    assert!(message.contains(&MAX_FRAME.to_string()) && message.contains("limit"), "{message}");
    assert_healthy(&read(), &json!(2));
    writing.join().expect("writer thread").expect("write to server");
}

#[test]
fn huge_content_length_is_refused_without_allocating() {
    let (env, pid) = server();
    let before = rss_kib(pid);
    let mut conn = connect(&env);
    let started = Instant::now();
    conn.send(b"Content-Length: 1000000000000\r\n\r\n{\"jsonrpc\":");
    let message = error(&conn.read_json_framed(), &Value::Null, -32600);
    assert!(started.elapsed() < WAIT);
    assert!(message.contains("1000000000000") && message.contains(&MAX_FRAME.to_string()), "{message}");

    // Meanwhile other connections are served, and the server did not reserve the body.
    let mut other = connect(&env);
    assert_healthy(&call(&mut other, json!(1), "health", json!({})), &json!(1));
    let after = rss_kib(pid);
    assert!(after < before + 64 * 1024, "the server grew from {before} KiB to {after} KiB");
}

#[test]
fn malformed_content_length_closes_that_connection_only() {
    let (env, _) = server();
    let mut conn = connect(&env);
    conn.send(b"Content-Length: abc\r\n\r\n");
    let message = error(&conn.read_json_framed(), &Value::Null, -32700);
    assert!(message.contains("Content-Length") && message.contains("abc"), "{message}");
    assert!(conn.is_closed(), "the connection is closed once its framing is lost");

    let mut other = connect(&env);
    assert_healthy(&call(&mut other, json!(1), "health", json!({})), &json!(1));
}

#[test]
fn cancel_request_cancels_a_running_execute() {
    let (env, _) = server();
    let mut conn = connect(&env);
    conn.send(&line(json!(5), "execute", json!({"command": "sleep", "args": ["30"]})));
    // Wait until it runs (status replies may come; the execute reply must not yet).
    let mut id = 100u64;
    wait_for_active(Active::Named("sleep"), || {
        id += 1;
        conn.send(&line(json!(id), "status", json!({})));
        let reply = conn.read_json_line();
        assert_eq!(reply["id"], id, "only the status reply can come now: {reply}");
        result(&reply).clone()
    });
    let cancelled_at = Instant::now();
    conn.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"$/cancelRequest\",\"params\":{\"id\":5}}\n");
    let (notes, reply) = until_response(|| conn.read_json_line(), &json!(5));
    assert!(notes.is_empty(), "sleep prints nothing: {notes:?}");
    let res = result(&reply);
    assert_eq!(res["status"], "cancelled", "{reply}");
    assert_eq!(res["exit_code"], Value::Null, "{reply}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(10), "cancellation took {:?}", cancelled_at.elapsed());

    // The connection goes on, and nothing runs any more.
    let reply = call(&mut conn, json!(6), "status", json!({}));
    assert_eq!(result(&reply)["active_commands"], json!([]), "{reply}");
}

#[test]
fn a_notification_gets_no_reply() {
    let (env, _) = server();
    let mut conn = connect(&env);
    conn.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"health\"}\n");
    conn.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"$/setTrace\",\"params\":{\"value\":\"off\"}}\n");
    conn.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"no/such/method\"}\n");
    // The first line that comes back is the reply to the request.
    assert_healthy(&call(&mut conn, json!(7), "health", json!({})), &json!(7));
}

#[test]
fn a_long_command_on_one_connection_does_not_delay_another() {
    let (env, _) = server();
    let mut busy = connect(&env);
    let mut other = connect(&env);
    let started = Instant::now();
    busy.send(&line(json!(1), "execute", json!({"command": "sleep", "args": ["2"]})));
    wait_active(&mut other, "sleep");
    let reply = call(&mut other, json!(2), "health", json!({}));
    assert_healthy(&reply, &json!(2));
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(1500), "health waited {waited:?} behind `sleep 2`");

    let (_, reply) = until_response(|| busy.read_json_line(), &json!(1));
    assert_eq!(result(&reply)["status"], "completed", "{reply}");
    assert!(started.elapsed() >= Duration::from_secs(2), "sleep 2 ended early");
}

#[test]
fn output_notifications_carry_their_request_id() {
    let (env, _) = server();
    let mut conn = connect(&env);
    // Two executions in flight on one connection, with ids of both kinds.
    conn.send(&line(json!("alice-req"), "execute", json!({"command": "hello", "args": ["Alice"]})));
    conn.send(&line(json!(42), "execute", json!({"command": "echo", "args": ["Bob"]})));
    let mut notes = Vec::new();
    let mut results = Vec::new();
    while results.len() < 2 {
        let message = conn.read_json_line();
        if message.get("id").is_some() {
            results.push(message);
        } else {
            assert_eq!(message["method"], "mcli/output", "{message}");
            let request_id = &message["params"]["request_id"];
            assert!(results.iter().all(|r: &Value| &r["id"] != request_id), "output after its response: {message}");
            notes.push(message);
        }
    }
    for (id, expected) in [(json!("alice-req"), "Hello Alice!\n"), (json!(42), "Bob\n")] {
        let reply = results.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no reply to {id}"));
        let res = result(reply);
        assert_eq!(res["status"], "completed", "{reply}");
        let own: Vec<Value> = notes.iter().filter(|n| n["params"]["request_id"] == id).cloned().collect();
        assert_eq!(stdout_of(&own, &id, &res["id"]), expected, "{notes:?}");
    }
    assert!(
        notes.iter().all(|n| n["params"]["request_id"] == "alice-req" || n["params"]["request_id"] == 42),
        "{notes:?}"
    );
}

#[test]
fn a_null_id_is_a_request_and_gets_a_reply() {
    let (env, _) = server();
    let mut conn = connect(&env);
    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"health\"}\n");
    assert_healthy(&conn.read_json_line(), &Value::Null);
}

#[test]
fn a_request_that_mentions_mcli_stdin_is_still_a_request() {
    let (env, _) = server();
    let mut conn = connect(&env);
    let reply =
        call(&mut conn, json!(1), "execute", json!({"command": "echo", "args": ["mcli/stdin"], "stream": false}));
    assert_eq!(result(&reply)["stdout"], "mcli/stdin\n");
}

#[test]
fn params_go_by_name_and_an_array_of_them_is_refused() {
    let (env, _) = server();
    let mut conn = connect(&env);
    let reply = call(&mut conn, json!(1), "execute", json!(["echo", ["pos"]]));
    let message = error(&reply, &json!(1), -32602);
    assert!(message.contains("`execute` takes its params by name"), "{message}");
    let reply = call(&mut conn, json!(2), "history", json!([5]));
    error(&reply, &json!(2), -32602);

    // Methods without params still take an empty array, and `null`.
    assert_healthy(&call(&mut conn, json!(3), "health", json!([])), &json!(3));
    assert_healthy(&call(&mut conn, json!(4), "health", Value::Null), &json!(4));
    let reply = call(&mut conn, json!(5), "status", json!({}));
    assert_eq!(result(&reply)["executed_total"], 0, "nothing ran: {reply}");
}

#[test]
fn a_batch_member_that_is_not_an_object_is_an_invalid_request() {
    let (env, _) = server();
    let mut conn = connect(&env);
    let health = request(json!(3), "health", json!({}));
    // A nested batch used to be read as a request, its members taken as fields in order.
    conn.send(format!("[1,[\"2.0\",7,\"health\"],[{health}],\"x\",null,{health}]\n").as_bytes());
    let reply = conn.read_json_line();
    let replies = reply.as_array().unwrap_or_else(|| panic!("not an array: {reply}"));
    assert_eq!(replies.len(), 6, "{reply}");
    for member in &replies[..5] {
        let message = error(member, &Value::Null, -32600);
        assert!(message.contains("JSON-RPC object"), "{message}");
    }
    assert_healthy(&replies[5], &json!(3));
}

#[test]
fn a_batch_over_the_limit_is_refused_whole() {
    let (env, _) = server();
    let mut conn = connect(&env);
    let members: Vec<String> = (0..65).map(|i| request(json!(i), "health", json!({}))).collect();
    conn.send(format!("[{}]\n", members.join(",")).as_bytes());
    let message = error(&conn.read_json_line(), &Value::Null, -32600);
    assert!(message.contains("a batch of 65 messages is over the limit of 64"), "{message}");
    // 64 are fine.
    conn.send(format!("[{}]\n", members[..64].join(",")).as_bytes());
    let reply = conn.read_json_line();
    assert_eq!(reply.as_array().map(Vec::len), Some(64), "{reply}");
}

#[test]
fn ids_may_be_negative_and_come_back_as_sent() {
    let (env, _) = server();
    let mut conn = connect(&env);
    for id in [json!(-1), json!(-9_223_372_036_854_775_808i64), json!(u64::MAX), json!("\u{e9}\u{1f600}")] {
        assert_healthy(&call(&mut conn, id.clone(), "health", json!({})), &id);
    }
    // Output and cancellation key on a negative id like on any other.
    conn.send(&line(json!(-5), "execute", json!({"command": "echo", "args": ["neg"]})));
    let (notes, reply) = until_response(|| conn.read_json_line(), &json!(-5));
    assert_eq!(stdout_of(&notes, &json!(-5), &result(&reply)["id"]), "neg\n");
    // A fraction is still no id.
    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"health\"}\n");
    let message = error(&conn.read_json_line(), &Value::Null, -32600);
    assert!(message.contains("`id` must be a string, an integer or null"), "{message}");
}

#[test]
fn a_cwd_that_is_not_a_directory_is_refused_before_anything_runs() {
    let (env, _) = server();
    let mut conn = connect(&env);
    let missing = env.root.path().join("gone");
    let file = env.root.path().join("a-file");
    std::fs::write(&file, "x").expect("write a file");
    let mut id = 0;
    for command in ["pwd", "echo", "sleep"] {
        for (cwd, problem) in [(&missing, "does not exist"), (&file, "is not a directory")] {
            id += 1;
            let params = json!({"command": command, "args": ["1"], "cwd": cwd});
            let message = error(&call(&mut conn, json!(id), "execute", params), &json!(id), -32602);
            assert_eq!(
                message,
                format!(
                    "invalid params: the working directory `{}` (`cwd`) {problem} on the server; nothing was run",
                    cwd.display()
                )
            );
        }
    }
    // A directory that exists is where a built-in runs.
    let reply = call(&mut conn, json!(99), "execute", json!({"command": "pwd", "cwd": "/", "stream": false}));
    assert_eq!(result(&reply)["stdout"], "/\n", "{reply}");
    let reply = call(&mut conn, json!(100), "status", json!({}));
    assert_eq!(result(&reply)["executed_total"], 1, "only the last one ran: {reply}");
}

#[test]
fn env_names_that_cannot_be_passed_on_are_refused() {
    let (env, _) = server();
    let mut conn = connect(&env);
    for (id, (name, value, problem)) in [
        ("A=B", "c", "`=` in its name"),
        ("", "c", "an empty name"),
        ("A\u{0}B", "c", "a NUL byte in its name"),
        ("OK", "c\u{0}d", "a NUL byte in its value"),
    ]
    .into_iter()
    .enumerate()
    {
        let params = json!({"command": "echo", "env": {"PATH": "/bin", name: value}});
        let message = error(&call(&mut conn, json!(id), "execute", params), &json!(id), -32602);
        let quoted = serde_json::to_string(name).expect("quote").replace("\\u0000", "\\0");
        assert!(message.starts_with(&format!("invalid params: `env` variable {quoted} has {problem}")), "{message}");
    }
    let reply =
        call(&mut conn, json!("ok"), "execute", json!({"command": "echo", "env": {"A": "b=c"}, "stream": false}));
    assert_eq!(result(&reply)["status"], "completed", "a value may hold `=`: {reply}");
}

#[test]
fn a_byte_order_mark_before_the_first_message_is_skipped() {
    let (env, _) = server();
    let mut conn = connect(&env);
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(&line(json!(1), "health", json!({})));
    conn.send(&bytes);
    assert_healthy(&conn.read_json_line(), &json!(1));

    let mut conn = connect(&env);
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(&framed(&request(json!(2), "health", json!({}))));
    conn.send(&bytes);
    assert_healthy(&conn.read_json_framed(), &json!(2));
}
