//! Starting, finding, stopping and replacing the server: auto-start, `mcli-server` subcommands,
//! races, stale sockets, failed starts and graceful shutdown.

#![forbid(unsafe_code)]

use std::process::Stdio;
use std::sync::{Arc, Barrier};

use mcli_tests::{Active, Run, TestEnv, process_gone, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn pid_of(env: &TestEnv, name: &str) -> u64 {
    env.server_file(name)["pid"].as_u64().expect("pid in server file")
}

#[test]
fn client_autostarts_a_detached_server_and_reuses_it() {
    let env = TestEnv::new();
    let run = env.client(&["hello", "World", "--verbose"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello World! (verbose mode)\n");
    assert!(run.stderr.contains("started mcli-server (pid "), "{}", run.stderr);
    let pids = env.server_pids();
    assert_eq!(pids.len(), 1, "one server runs after the client exits");
    assert_eq!(pids[0] as u64, pid_of(&env, "server"));

    let again = env.client(&["hello"]);
    again.expect_code(0);
    assert_eq!(again.stdout, "Hello World!\n");
    assert_eq!(again.stderr, "", "a warm call says nothing of its own");
    assert_eq!(env.server_pids(), pids, "the second call reuses the server");
}

#[test]
fn autostarted_server_does_not_hold_the_clients_stdout() {
    let env = TestEnv::new();
    let client = env.bin("mcli-client");
    let script = format!("x=$('{}' -q hello); echo \"got: $x\"", client.display());
    let run = Run::of(env.command("sh").args(["-c", &script]));
    run.expect_code(0);
    assert_eq!(run.stdout, "got: Hello World!\n");
    assert_eq!(env.server_pids().len(), 1);
}

#[test]
fn files_and_modes_are_private() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&env.runtime_dir), 0o700);
    let socket = env.socket("server");
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket());
    assert_eq!(mode(&socket), 0o600);
    let file = env.runtime_dir.join("server.json");
    assert_eq!(mode(&file), 0o600);
    let info = env.server_file("server");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["protocol"], 1);
    assert_eq!(info["socket"], socket.display().to_string());
    assert!(info["tcp"].is_null() && info["http"].is_null());
    assert_eq!(info["token"].as_str().unwrap().len(), 64);
}

#[test]
fn start_is_idempotent_and_stop_removes_the_socket() {
    let env = TestEnv::new();
    let first = env.server(&["start"]);
    first.expect_code(0);
    let socket = env.socket("server");
    assert!(first.stdout.contains(&format!("listening on {}", socket.display())), "{}", first.stdout);
    let pid = pid_of(&env, "server");

    let second = env.server(&["start"]);
    second.expect_code(0);
    assert!(
        second.stdout.contains("already running") && second.stdout.contains(&format!("pid {pid}")),
        "{}",
        second.stdout
    );
    assert_eq!(env.server_pids().len(), 1);

    let stop = env.server(&["stop"]);
    stop.expect_code(0);
    assert!(stop.stdout.contains(&format!("stopped the server (pid {pid})")), "{}", stop.stdout);
    assert!(!socket.exists(), "socket file removed");
    assert!(!env.runtime_dir.join("server.json").exists(), "server file removed");
    assert!(env.server_pids().is_empty());

    let again = env.server(&["stop"]);
    again.expect_code(0);
    assert!(again.stdout.contains("no server named `server` is running"), "{}", again.stdout);
}

#[test]
fn restart_replaces_the_server() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let before = pid_of(&env, "server");
    let run = env.server(&["restart"]);
    run.expect_code(0);
    assert!(run.stdout.contains("listening on"), "{}", run.stdout);
    let after = pid_of(&env, "server");
    assert_ne!(before, after);
    wait_until("the old server to exit", || env.server_pids() == vec![after as u32]);
}

#[test]
fn status_describes_the_server_and_fails_without_one() {
    let env = TestEnv::new();
    let none = env.server(&["status"]);
    none.expect_code(1);
    assert!(none.stderr.contains("no server named `server` is running"), "{}", none.stderr);

    env.client(&["-q", "hello"]).expect_code(0);
    env.client(&["-q", "exit", "3"]).expect_code(3);
    let pid = pid_of(&env, "server");
    let text = env.server(&["status"]);
    text.expect_code(0);
    for needle in [
        format!("pid {pid}"),
        format!("mcli-server {}", env!("CARGO_PKG_VERSION")),
        "up ".to_owned(),
        env.socket("server").display().to_string(),
        "2 executed, 1 failed".to_owned(),
    ] {
        assert!(text.stdout.contains(&needle), "missing {needle:?} in:\n{}", text.stdout);
    }
    let json = env.server(&["status", "--json"]);
    json.expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(status["pid"], pid);
    assert_eq!(status["executed_total"], 2);
    assert_eq!(status["failed_total"], 1);
    assert_eq!(status["running"], true);
    assert_eq!(status["config"]["api_daemon"]["max_concurrent_commands"], 10);
}

#[test]
fn commands_lists_with_or_without_a_server() {
    let env = TestEnv::new();
    let offline = env.server(&["commands"]);
    offline.expect_code(0);
    assert!(offline.stdout.lines().any(|l| l.starts_with("hello") && l.contains("[builtin]")), "{}", offline.stdout);
    assert!(env.server_pids().is_empty(), "listing commands starts no server");
    env.server(&["start"]).expect_code(0);
    let online = env.server(&["commands", "--json"]);
    online.expect_code(0);
    let list: serde_json::Value = serde_json::from_str(&online.stdout).unwrap();
    let names: Vec<&str> = list["commands"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"hello") && names.contains(&"echo"), "{names:?}");
}

#[test]
fn foreground_server_logs_to_stderr_and_stops_on_sigterm() {
    let mut env = TestEnv::new();
    let (pid, line) = env.foreground_server(&[]);
    assert!(line.contains(&format!("listening on {}", env.socket("server").display())), "{line}");
    let second = env.server(&["start", "--foreground"]);
    second.expect_code(1);
    assert!(
        second.stderr.contains("already running") && second.stderr.contains("mcli-server stop"),
        "{}",
        second.stderr
    );

    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let child = env.take_child(pid);
    let run = Run::wait(child);
    run.expect_code(0);
    assert!(run.stderr.contains("INFO") && run.stderr.contains("stopped"), "{}", run.stderr);
    assert!(!env.socket("server").exists());
}

#[test]
fn twenty_racing_clients_share_one_new_server() {
    let env = TestEnv::new();
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let mut cmd = env.client_cmd(&["-q", "echo", &format!("client {i}")]);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (i, Run::of(&mut cmd))
            })
        })
        .collect();
    for handle in handles {
        let (i, run) = handle.join().unwrap();
        run.expect_code(0);
        assert_eq!(run.stdout, format!("client {i}\n"));
    }
    assert_eq!(env.server_pids().len(), 1, "exactly one server");
}

#[test]
fn a_killed_servers_stale_socket_is_replaced() {
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    let old = pid_of(&env, "server");
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    wait_until("the killed server is gone", || process_gone(old as u32));
    assert!(env.socket("server").exists(), "kill -9 leaves the socket file behind");

    let run = env.client(&["hello", "again"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello again!\n");
    let new = pid_of(&env, "server");
    assert_ne!(old, new);
    assert_eq!(env.server_pids(), vec![new as u32]);
}

#[test]
fn a_server_that_cannot_start_gives_69_and_its_log() {
    let mut env = TestEnv::new();
    let config = env.config_home.join("broken.toml");
    std::fs::write(&config, "[api_daemon]\nmax_concurrent_commands = \"many\"\n").unwrap();
    env.set_env("MCLI_CONFIG", &config);
    let run = env.client(&["hello"]);
    run.expect_code(69);
    assert!(run.stderr.contains("the server exited before it was ready"), "{}", run.stderr);
    assert!(run.stderr.contains("`api_daemon.max_concurrent_commands`"), "log tail in the message: {}", run.stderr);
    assert!(env.server_pids().is_empty());
}

#[test]
fn the_readiness_wait_is_bounded() {
    let mut env = TestEnv::new();
    // Hold the name lock as a hung server would: the new server cannot take the name.
    env.create_runtime_dir();
    let lock = mcli_shared_lock(&env.runtime_dir.join("server.lock"));
    env.set_env("MCLI_START_TIMEOUT", "1");
    let run = env.client(&["hello"]);
    run.expect_code(69);
    assert!(run.stderr.contains("did not become ready within 1s"), "{}", run.stderr);
    assert!(run.stderr.contains("server.log"), "names the log: {}", run.stderr);
    drop(lock);
    wait_until("the abandoned server is gone", || env.server_pids().is_empty());
}

/// Takes an exclusive flock on `path`, as a server holds its name lock.
fn mcli_shared_lock(path: &std::path::Path) -> std::fs::File {
    let file = std::fs::File::create(path).unwrap();
    file.try_lock().expect("lock is free");
    file
}

#[test]
fn shutdown_lets_running_commands_finish() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let mut slow = env.client_cmd(&["-q", "sleep", "1.5"]);
    let slow = slow.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    env.wait_for_active(Active::Any);
    let stop = env.server(&["stop"]);
    stop.expect_code(0);
    Run::wait(slow).expect_code(0);
    assert!(!env.socket("server").exists());
    assert!(env.server_pids().is_empty());
}

#[test]
fn a_request_sent_as_the_server_closes_its_connections_is_answered_not_dropped() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let mut conn = mcli_tests::RawConn::connect(&env.socket("server"));
    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"shutdown\",\"params\":{}}\n");
    let stopping = conn.read_json_line();
    assert!(stopping.get("result").is_some(), "{stopping}");
    // Nothing runs, so the server closes its connections at once. Requests that cross the
    // close get an answer a client retries on (where they used to find the connection closed):
    // keep asking until the closing connection answers.
    let started = std::time::Instant::now();
    for id in 2.. {
        conn.send(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"health\"}}\n").as_bytes());
        let reply = conn.read_json_line();
        if reply["error"]["code"] == -32004
            && reply["error"]["message"].as_str().is_some_and(|m| m.contains("try again"))
        {
            break;
        }
        assert!(started.elapsed() < mcli_tests::WAIT, "the server never closed the connection: {reply}");
    }
    // A batch is answered member by member (its notification gets nothing).
    let execute = r#"{"jsonrpc":"2.0","id":"b","method":"execute","params":{"command":"hello","args":[]}}"#;
    conn.send(format!("[{execute},{{\"jsonrpc\":\"2.0\",\"method\":\"mcli/ping\"}}]\n").as_bytes());
    let batch = conn.read_json_line();
    assert_eq!(batch.as_array().map(Vec::len), Some(1), "{batch}");
    assert_eq!(batch[0]["id"], "b", "{batch}");
    assert_eq!(batch[0]["error"]["code"], -32004, "{batch}");
    drop(conn);
    wait_until("the server has exited", || env.server_pids().is_empty());
}

#[test]
fn a_new_command_during_shutdown_starts_a_new_server() {
    let mut env = TestEnv::new();
    let (pid, _) = env.foreground_server(&[]);
    let mut slow = env.client_cmd(&["-q", "sleep", "2"]);
    let slow = slow.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    env.wait_for_active(Active::Any);
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    // The old server refuses new work while it drains, then a new one takes over the name.
    let run = env.client(&["-q", "hello"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello World!\n");
    Run::wait(slow).expect_code(0);
    Run::wait(env.take_child(pid)).expect_code(0);
    // A starter that found the old server still answering exits on its own: wait for it.
    wait_until("exactly one server runs", || env.server_pids().len() == 1);
    assert_ne!(env.server_pids()[0], pid);
}

#[test]
fn named_servers_are_independent() {
    let mut env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    env.client(&["-q", "-s", "work", "hello"]).expect_code(0);
    assert!(env.socket("work").exists());
    assert_ne!(pid_of(&env, "server"), pid_of(&env, "work"));
    assert_eq!(env.server_pids().len(), 2);

    env.server(&["-s", "work", "stop"]).expect_code(0);
    assert!(!env.socket("work").exists());
    assert!(env.socket("server").exists(), "stopping one leaves the other");

    env.set_env("MCLI_SOCKET_NAME", "other");
    env.client(&["-q", "hello"]).expect_code(0);
    assert!(env.socket("other").exists());
    let status = env.server(&["status", "--json"]);
    status.expect_code(0);
    assert!(status.stdout.contains("other.sock"), "{}", status.stdout);

    let bad = env.client(&["-s", "../x", "hello"]);
    bad.expect_code(69);
    assert!(bad.stderr.contains("invalid server name `../x`"), "{}", bad.stderr);
    let bad = env.server(&["-s", "a b", "status"]);
    bad.expect_code(1);
    assert!(bad.stderr.contains("invalid server name `a b`"), "{}", bad.stderr);
}

#[test]
fn the_server_log_is_written_by_a_detached_server() {
    let env = TestEnv::new();
    env.server(&["start", "--debug"]).expect_code(0);
    env.client(&["-q", "hello"]).expect_code(0);
    env.server(&["stop"]).expect_code(0);
    let log = env.log("server");
    assert!(log.contains("listening on"), "{log}");
    assert!(log.contains("method=\"execute\"") || log.contains("method=execute"), "debug request lines: {log}");
}

#[test]
fn restart_keeps_the_tcp_and_http_listeners_the_server_was_started_with() {
    let env = TestEnv::new();
    env.server(&["start", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"]).expect_code(0);
    let before = env.status_json();
    let (tcp, http) = (before["tcp"].as_str().unwrap().to_owned(), before["http"].as_str().unwrap().to_owned());
    let restart = env.server(&["restart"]);
    restart.expect_code(0);
    assert!(
        restart.stdout.contains(&format!("restarting with --tcp {tcp} --http {http}, as the server ran")),
        "{}",
        restart.stdout
    );
    let after = env.status_json();
    assert_ne!(after["pid"], before["pid"], "a new server");
    assert_eq!((after["tcp"].as_str(), after["http"].as_str()), (Some(tcp.as_str()), Some(http.as_str())));
}
