//! Corner cases found in review: shutdown with queued work, oversized settings, a closed
//! stdout in local mode, manifest arguments, protocol revisions and a socket deleted under a
//! live server.

#![forbid(unsafe_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use mcli_tests::{Active, RawConn, Run, TestEnv};

fn commands_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn script(dir: &std::path::Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_command_queued_at_shutdown_runs_on_the_next_server() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\nmax_concurrent_commands = 1\n");
    env.server(&["start"]).expect_code(0);
    let first_pid = env.server_file("server")["pid"].as_u64().unwrap();
    let running = env.client_cmd(&["-q", "sleep", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    env.wait_for_active(Active::Any);
    let queued =
        env.client_cmd(&["-q", "echo", "queued"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    mcli_tests::wait_until("the second call waits", || {
        let status = env.server(&["status", "--json"]);
        serde_json::from_str::<serde_json::Value>(&status.stdout).is_ok_and(|s| s["queued"] == 1)
    });
    env.server(&["stop"]).expect_code(0);
    Run::wait(running).expect_code(0);
    let queued = Run::wait(queued);
    queued.expect_code(0);
    assert_eq!(queued.stdout, "queued\n");
    assert_ne!(env.server_file("server")["pid"].as_u64().unwrap(), first_pid, "it ran on a new server");
}

#[test]
fn settings_too_large_for_a_duration_are_refused() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\ncommand_timeout = 1e20\n");
    let run = env.server(&["start"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("`api_daemon.command_timeout` must be a number of seconds from 0 (no limit) to 1e9"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_closed_stdout_ends_a_local_run_at_once() {
    let mut env = TestEnv::new();
    script(&commands_dir(&env), "yesman", "#!/bin/sh\nexec yes\n");
    env.set_env("MCLI_DAEMON_ROUTING", "false");
    let mut child = env.client_cmd(&["yesman"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let run = Run::wait(child);
    run.expect_code(141);
}

#[test]
fn manifest_words_that_match_file_names_stay_words() {
    let env = TestEnv::new();
    let dir = commands_dir(&env);
    script(&dir, "deploy", "#!/bin/sh\n");
    std::fs::write(dir.join("notes.txt"), "").unwrap();
    std::fs::write(dir.join("say.toml"), "run = [\"echo\", \"deploy\", \"notes.txt\"]\n").unwrap();
    let run = env.client(&["-q", "say"]);
    run.expect_code(0);
    assert_eq!(run.stdout, format!("deploy {}\n", dir.join("notes.txt").display()));
}

#[test]
fn a_newer_client_hears_about_the_protocol_not_its_fields() {
    let mut env = TestEnv::new();
    env.foreground_server(&[]);
    let mut conn = RawConn::connect(&env.socket("server"));
    conn.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"execute\",\"params\":{\"command\":\"hello\",\"protocol\":2,\"priority\":3}}\n");
    let reply = conn.read_json_line();
    assert_eq!(reply["error"]["code"], -32005, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("the client speaks protocol 2"), "{reply}");
}

#[test]
fn a_client_right_after_the_socket_was_deleted_reaches_the_same_server() {
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    let pid = env.server_file("server")["pid"].as_u64().unwrap() as u32;
    std::fs::remove_file(env.socket("server")).unwrap();
    // No wait for the repair: the starter's new server finds the old one answering again.
    let run = env.client(&["-q", "hello", "again"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello again!\n");
    // The server that the client started finds the first one answering again and exits.
    mcli_tests::wait_until("only the first server is left", || env.server_pids() == vec![pid]);
}

#[test]
fn a_detached_start_is_not_an_on_demand_server() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let pid = env.server_file("server")["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("--auto-started"), "no idle timeout unless configured");
    env.client(&["-q", "hello"]).expect_code(0);
    env.server(&["stop"]).expect_code(0);
    env.client(&["-q", "hello"]).expect_code(0);
    let pid = env.server_file("server")["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("--auto-started"));
}

fn framed(text: &str) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", text.len()).into_bytes();
    out.extend_from_slice(text.as_bytes());
    out
}

#[test]
fn a_cancel_sent_with_its_request_still_cancels_it() {
    let mut env = TestEnv::new();
    env.foreground_server(&[]);
    let mut conn = RawConn::connect(&env.socket("server"));
    // Both in one write: the cancel may be handled before the request is registered.
    conn.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"execute\",\"params\":{\"command\":\"sleep\",\"args\":[\"30\"]}}\n\
          {\"jsonrpc\":\"2.0\",\"method\":\"$/cancelRequest\",\"params\":{\"id\":5}}\n",
    );
    let reply = conn.read_json_line();
    assert_eq!(reply["id"], 5, "{reply}");
    assert_eq!(reply["result"]["status"], "cancelled", "{reply}");
}

#[test]
fn a_stdio_session_exits_on_shutdown_while_its_input_stays_open() {
    let env = TestEnv::new();
    let mut child = env
        .server_cmd(&["--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"shutdown\"}\n").unwrap();
    // Standard input stays open (held here) while the session must end by itself.
    let run = Run::wait(child);
    run.expect_code(0);
    assert!(run.stdout.contains("\"ok\":true"), "{}", run.stdout);
    drop(stdin);
}

#[test]
fn the_tcp_bridge_speaks_the_editors_framing() {
    let env = TestEnv::new();
    env.server(&["start", "--tcp", "127.0.0.1:0"]).expect_code(0);
    let file = env.runtime_dir.join("server.json");
    let mut child = env
        .client_cmd(&["--stdio", "-f", file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &framed("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\"}")).unwrap();
    drop(stdin);
    let run = Run::wait(child);
    run.expect_code(0);
    assert!(run.stdout.starts_with("Content-Length: "), "{}", run.stdout);
    assert!(run.stdout.contains("\"status\":\"healthy\""), "{}", run.stdout);
}

#[test]
fn an_unauthenticated_tcp_peer_cannot_send_large_messages() {
    use std::io::{BufRead, BufReader, Write};
    let env = TestEnv::new();
    env.server(&["start", "--tcp", "127.0.0.1:0"]).expect_code(0);
    let addr = env.server_file("server")["tcp"].as_str().unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(mcli_tests::WAIT)).unwrap();
    let mut big = vec![b'{'];
    big.extend(std::iter::repeat_n(b' ', 200 * 1024));
    let _ = stream.write_all(&big);
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["error"]["code"], -32003, "{reply}");
}
