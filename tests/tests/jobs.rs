//! Detached jobs end to end: `--detach`, `--attach` (one or several, live, with the job's exit
//! status), `--wait` (all or `--any`), Ctrl-C while attached, `--on-interrupt detach`, the
//! output kept on disk (per-job cut, total pruning, bounded server memory), jobs across a
//! `kill -9` and a restart of the server, `mcli-server jobs` and `cancel`, the history's
//! `detached` flag, the `attach` method with an offset, and the HTTP endpoints.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use mcli_tests::{Run, TestEnv, WAIT, process_gone, read_line_within, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A `#!/bin/sh` command `name` in the user's commands dir.
fn script(env: &TestEnv, name: &str, body: &str) {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `gated GATE OUT CODE`: prints `start OUT`, waits until the file GATE exists, prints `end
/// OUT` (and `err OUT` on stderr), exits CODE.
fn gated_script(env: &TestEnv) {
    script(
        env,
        "gated",
        "echo \"start $2\"\nwhile [ ! -e \"$1\" ]; do sleep 0.02; done\necho \"end $2\"\necho \"err $2\" >&2\nexit \"$3\"\n",
    );
}

fn gate(env: &TestEnv, name: &str) -> PathBuf {
    env.root.path().join(name)
}

fn open(path: &PathBuf) {
    std::fs::write(path, "").unwrap();
}

/// Starts `args` detached; returns the id printed.
fn detach(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["-d"];
    all.extend_from_slice(args);
    let run = env.client(&all);
    run.expect_code(0);
    let id = run.stdout.trim().to_owned();
    assert!(id.parse::<u64>().is_ok(), "not an id: {run:?}");
    id
}

fn jobs_json(env: &TestEnv) -> Vec<Value> {
    let run = env.server(&["jobs", "--json"]);
    run.expect_code(0);
    let value: Value = serde_json::from_str(&run.stdout).unwrap();
    value["jobs"].as_array().cloned().unwrap_or_default()
}

fn job(env: &TestEnv, id: &str) -> Value {
    jobs_json(env).into_iter().find(|j| j["id"].as_u64() == id.parse().ok()).unwrap_or(Value::Null)
}

/// Spawns the client with stdout and stderr piped.
fn spawn_client(env: &TestEnv, args: &[&str]) -> Child {
    env.client_cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn three_jobs_from_three_clients_followed_by_a_fourth_after_they_exited() {
    let env = TestEnv::new();
    gated_script(&env);
    let go = gate(&env, "go");
    let go = go.to_str().unwrap();
    let ids: Vec<String> = [("a", "0"), ("b", "3"), ("c", "0")]
        .iter()
        .map(|(out, code)| detach(&env, &["gated", go, out, code]))
        .collect();
    for id in &ids {
        assert_eq!(job(&env, id)["state"], "running");
    }
    let mut all = vec!["--attach"];
    all.extend(ids.iter().map(String::as_str));
    let follower = spawn_client(&env, &all);
    // It follows live: the jobs end only now.
    wait_until("the jobs' first lines are written", || {
        ids.iter().all(|id| job(&env, id)["stdout_bytes"].as_u64().unwrap_or(0) > 0)
    });
    open(&gate(&env, "go"));
    let run = Run::wait(follower);
    run.expect_code(3);
    for (id, out) in ids.iter().zip(["a", "b", "c"]) {
        let start = run.stdout.find(&format!("[{id}] start {out}\n")).unwrap_or_else(|| panic!("{run:?}"));
        let end = run.stdout.find(&format!("[{id}] end {out}\n")).unwrap_or_else(|| panic!("{run:?}"));
        assert!(start < end, "{run:?}");
        assert!(run.stderr.contains(&format!("[{id}] err {out}\n")), "{run:?}");
    }
    // One job alone: no prefix, its own status.
    let one = env.client(&["--attach", &ids[1]]);
    one.expect_code(3);
    assert_eq!(one.stdout, "start b\nend b\n");
    assert_eq!(one.stderr, "err b\n");
    env.client(&["--attach", &ids[0]]).expect_code(0);
}

#[test]
fn attach_exits_as_a_direct_call_would_signal_timeout_cancel() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\ncommand_timeout = 0.5\n");
    script(&env, "killed", "kill -TERM $$\n");
    script(&env, "nap", "sleep \"$1\"\necho rested\n");
    let killed = detach(&env, &["killed"]);
    env.client(&["--attach", &killed]).expect_code(128 + 15);
    // The configured timeout applies to a detached job...
    let timed = detach(&env, &["nap", "5"]);
    env.client(&["--attach", &timed]).expect_code(124);
    // ...unless the call asks for none.
    let free = detach(&env, &["-t", "0", "nap", "1"]);
    let run = env.client(&["--attach", &free]);
    run.expect_code(0);
    assert_eq!(run.stdout, "rested\n");
    let cancelled = detach(&env, &["-t", "0", "nap", "60"]);
    let cancel = env.server(&["cancel", &cancelled]);
    cancel.expect_code(0);
    env.client(&["--attach", &cancelled]).expect_code(130);
    assert_eq!(job(&env, &cancelled)["state"], "cancelled");
    let unknown = env.server(&["cancel", "999999"]);
    unknown.expect_code(1);
    assert!(unknown.stderr.contains("nothing runs with id 999999"), "{unknown:?}");
}

#[test]
fn ctrl_c_on_attach_detaches_and_the_job_runs_on() {
    let env = TestEnv::new();
    gated_script(&env);
    let go = gate(&env, "go");
    let id = detach(&env, &["gated", go.to_str().unwrap(), "x", "0"]);
    let mut follower = spawn_client(&env, &["--attach", &id]);
    let line = read_line_within(follower.stdout.take().unwrap(), WAIT);
    assert_eq!(line.as_deref(), Some("start x\n"));
    kill(Pid::from_raw(follower.id() as i32), Signal::SIGINT).unwrap();
    let run = Run::wait(follower);
    run.expect_code(130);
    assert!(run.stderr.contains(&format!("detached from job {id}; it runs on")), "{run:?}");
    assert_eq!(job(&env, &id)["state"], "running");
    open(&go);
    env.client(&["--wait", &id]).expect_code(0);
    let again = env.client(&["--attach", &id]);
    again.expect_code(0);
    assert_eq!(again.stdout, "start x\nend x\n");
}

#[test]
fn cancel_on_interrupt_cancels_the_job() {
    let env = TestEnv::new();
    gated_script(&env);
    let go = gate(&env, "never");
    let id = detach(&env, &["gated", go.to_str().unwrap(), "x", "0"]);
    let mut follower = spawn_client(&env, &["--attach", &id, "--cancel-on-interrupt"]);
    assert!(read_line_within(follower.stdout.take().unwrap(), WAIT).is_some());
    kill(Pid::from_raw(follower.id() as i32), Signal::SIGINT).unwrap();
    Run::wait(follower).expect_code(130);
    assert_eq!(job(&env, &id)["state"], "cancelled");
}

#[test]
fn on_interrupt_detach_turns_a_running_call_into_a_job() {
    let mut env = TestEnv::new();
    gated_script(&env);
    let go = gate(&env, "go");
    env.set_env("MCLI_ON_INTERRUPT", "detach");
    let mut call = spawn_client(&env, &["gated", go.to_str().unwrap(), "y", "4"]);
    assert_eq!(read_line_within(call.stdout.take().unwrap(), WAIT).as_deref(), Some("start y\n"));
    kill(Pid::from_raw(call.id() as i32), Signal::SIGINT).unwrap();
    let run = Run::wait(call);
    run.expect_code(130);
    let id = jobs_json(&env)[0]["id"].to_string();
    assert!(run.stderr.contains(&format!("follow it again with `mcli-client --attach {id}`")), "{run:?}");
    assert_eq!(job(&env, &id)["state"], "running");
    open(&go);
    env.client(&["--wait", &id]).expect_code(4);
    // Without an interrupt, the call is as a plain one: its output and status.
    let plain = env.client(&["--on-interrupt", "detach", "gated", go.to_str().unwrap(), "z", "5"]);
    plain.expect_code(5);
    assert_eq!(plain.stdout, "start z\nend z\n");
}

#[test]
fn wait_returns_the_worst_status_and_any_the_first() {
    let env = TestEnv::new();
    gated_script(&env);
    let (go, never) = (gate(&env, "go"), gate(&env, "never"));
    let fails = detach(&env, &["gated", go.to_str().unwrap(), "f", "7"]);
    let ok = detach(&env, &["gated", go.to_str().unwrap(), "o", "0"]);
    let slow = detach(&env, &["gated", never.to_str().unwrap(), "s", "0"]);
    open(&go);
    env.client(&["--wait", &fails]).expect_code(7);
    env.client(&["--wait", &ok, &fails]).expect_code(7);
    env.client(&["--wait", &ok]).expect_code(0);
    // `--any` returns with the first one ended while another still runs.
    env.client(&["--any", "--wait", &slow, &ok]).expect_code(0);
    assert_eq!(job(&env, &slow)["state"], "running");
    env.server(&["cancel", &slow]).expect_code(0);
    env.client(&["--wait", &slow]).expect_code(130);
    let unknown = env.client(&["--wait", &ok, "424242"]);
    unknown.expect_code(66);
    assert!(unknown.stderr.contains("no job 424242: no detached job with that id exists"), "{unknown:?}");
}

#[test]
fn unknown_and_pruned_ids_say_which() {
    let mut env = TestEnv::new();
    env.use_config("[server]\njobs_output_total_max = 1000\n");
    script(&env, "big", "head -c 600 /dev/zero | tr '\\0' x\n");
    let unknown = env.client(&["--attach", "31337"]);
    unknown.expect_code(66);
    assert!(unknown.stderr.contains("no job 31337: no detached job with that id exists"), "{unknown:?}");
    let first = detach(&env, &["big"]);
    env.client(&["--wait", &first]).expect_code(0);
    let second = detach(&env, &["big"]);
    env.client(&["--wait", &second]).expect_code(0);
    let pruned = env.client(&["--attach", &first]);
    pruned.expect_code(66);
    assert!(pruned.stderr.contains(&format!("the output of job {first} was pruned")), "{pruned:?}");
    assert_eq!(job(&env, &first)["pruned"], true);
    assert_eq!(env.client(&["--attach", &second]).stdout.len(), 600);
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_job_writing_100_mb_unattended_is_cut_on_disk_and_the_server_stays_small() {
    let env = TestEnv::new();
    script(&env, "flood", "head -c 100000000 /dev/zero\necho done >&2\n");
    env.client(&["hello"]).expect_code(0);
    let pid = env.server_pids()[0];
    let before = rss_kib(pid);
    let id = detach(&env, &["flood"]);
    env.client(&["--wait", &id]).expect_code(0);
    let after = rss_kib(pid);
    assert!(after < before + 50 * 1024, "server RSS grew from {before} KiB to {after} KiB");
    let info = job(&env, &id);
    assert_eq!(info["truncated"], true, "{info}");
    let kept = info["stdout_bytes"].as_u64().unwrap();
    assert!(kept > 16 * 1024 * 1024 && kept < 16 * 1024 * 1024 + 200, "{info}");
    let dir = env.state_home.join("mcli/server.jobs").join(&id);
    let stdout = std::fs::read(dir.join("stdout")).unwrap();
    assert!(stdout[..16 * 1024 * 1024].iter().all(|b| *b == 0));
    let marker = String::from_utf8_lossy(&stdout[16 * 1024 * 1024..]).into_owned();
    assert!(marker.contains("output cut here"), "{marker}");
    // Past the cut nothing more is kept, not even the other stream.
    assert_eq!(std::fs::read(dir.join("stderr")).unwrap(), b"");
}

fn start_server(env: &TestEnv) -> u32 {
    env.server(&["start"]).expect_code(0);
    *env.server_pids().first().expect("a server runs")
}

#[test]
fn jobs_outlive_a_kill_9_and_a_restart_of_the_server() {
    let env = TestEnv::new();
    let pidfile = env.root.path().join("sleeper.pid");
    script(&env, "sleeper", &format!("echo $$ > {}\necho sleeping\nexec sleep 300\n", pidfile.display()));
    let server = start_server(&env);
    let done = detach(&env, &["echo", "finished"]);
    env.client(&["--wait", &done]).expect_code(0);
    let running = detach(&env, &["sleeper"]);
    wait_until("the sleeper writes its pid", || std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n')));
    let sleeper: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_until("the server has kept its line", || job(&env, &running)["stdout_bytes"] == 9);
    kill(Pid::from_raw(server as i32), Signal::SIGKILL).unwrap();
    // Its other threads may still hold the socket a moment after the leader is a zombie.
    wait_until("the server is gone", || {
        process_gone(server) && std::os::unix::net::UnixStream::connect(env.socket("server")).is_err()
    });
    start_server(&env);
    let finished = env.client(&["--attach", &done]);
    finished.expect_code(0);
    assert_eq!(finished.stdout, "finished\n");
    let interrupted = env.client(&["--attach", &running]);
    interrupted.expect_code(130);
    assert_eq!(interrupted.stdout, "sleeping\n");
    assert_eq!(job(&env, &running)["state"], "interrupted");
    wait_until("the dead server's command is ended", || process_gone(sleeper));
    // A graceful restart keeps finished jobs too.
    env.server(&["restart"]).expect_code(0);
    assert_eq!(env.client(&["--attach", &done]).stdout, "finished\n");
    let history = env.server(&["history", "--json"]);
    let entries: Value = serde_json::from_str(&history.stdout).unwrap();
    let entries = entries["entries"].as_array().unwrap();
    let of = |id: &str| entries.iter().find(|e| e["id"].as_u64() == id.parse().ok()).cloned().unwrap_or(Value::Null);
    assert_eq!(of(&done)["detached"], true, "{entries:?}");
    assert_eq!(of(&running)["status"], "interrupted", "{entries:?}");
}

#[test]
fn history_flags_detached_jobs_and_the_jobs_table_lists_them() {
    let env = TestEnv::new();
    env.client(&["echo", "plain"]).expect_code(0);
    let id = detach(&env, &["exit", "2"]);
    env.client(&["--wait", &id]).expect_code(2);
    let table = env.server(&["history"]);
    let line = table.stdout.lines().find(|l| l.trim_start().starts_with(&id)).unwrap_or_default().to_owned();
    assert!(line.contains("yes") && line.contains("exit 2"), "{}", table.stdout);
    let plain = table.stdout.lines().find(|l| l.contains("echo plain")).unwrap_or_default().to_owned();
    assert!(!plain.contains("yes"), "{}", table.stdout);
    let jobs = env.server(&["jobs"]);
    jobs.expect_code(0);
    assert!(
        jobs.stdout.contains("STATE") && jobs.stdout.contains("failed") && jobs.stdout.contains("exit 2"),
        "{jobs:?}"
    );
    assert!(!jobs.stdout.contains("echo plain"), "{jobs:?}");
}

#[test]
fn detached_jobs_count_against_the_limits() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\nmax_concurrent_commands = 1\n[server]\nmax_queued_commands = 0\n");
    gated_script(&env);
    let go = gate(&env, "go");
    let id = detach(&env, &["gated", go.to_str().unwrap(), "x", "0"]);
    let busy = env.client(&["-d", "echo", "no"]);
    busy.expect_code(75);
    assert!(busy.stderr.contains("server busy"), "{busy:?}");
    open(&go);
    env.client(&["--wait", &id]).expect_code(0);
    detach(&env, &["echo", "yes"]);
}

#[test]
fn the_attach_method_replays_from_an_offset() {
    let env = TestEnv::new();
    let id = detach(&env, &["echo", "hello", "world"]);
    env.client(&["--wait", &id]).expect_code(0);
    let request =
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"attach\",\"params\":{{\"id\":{id},\"offset\":6}}}}\n");
    let replies = env.raw_lines("server", &request, 2);
    assert_eq!(replies[0]["method"], "mcli/output", "{replies:?}");
    assert_eq!(replies[0]["params"]["data"], "world\n", "{replies:?}");
    assert_eq!(replies[1]["result"]["status"], "completed", "{replies:?}");
    assert_eq!(replies[1]["result"]["exit_code"], 0, "{replies:?}");
    let bad = env.raw_lines(
        "server",
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"jobs\",\"params\":{\"state\":\"asleep\"}}\n",
        1,
    );
    assert!(bad[0]["error"]["message"].as_str().unwrap().contains("unknown `state` \"asleep\""), "{bad:?}");
}

/// One HTTP/1.1 request with the token; the status and the body (de-chunked).
fn http(addr: &str, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut rest = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, rest.to_vec());
    }
    let mut out = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16).unwrap();
        rest = &rest[end + 2..];
        if size == 0 {
            return (status, out);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[test]
fn http_detach_list_state_and_followed_output() {
    let env = TestEnv::new();
    gated_script(&env);
    env.server(&["start", "--http", "127.0.0.1:0"]).expect_code(0);
    let file = env.server_file("server");
    let (addr, token) = (file["http"].as_str().unwrap().to_owned(), file["token"].as_str().unwrap().to_owned());
    let go = gate(&env, "go");
    let body = format!("{{\"command\":\"gated\",\"args\":[\"{}\",\"h\",\"6\"],\"detach\":true}}", go.display());
    let (status, reply) = http(&addr, &token, "POST", "/execute", Some(&body));
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&reply));
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    let id = reply["id"].to_string();
    assert_eq!(reply["status"], "running");
    let (status, one) = http(&addr, &token, "GET", &format!("/jobs/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&one).unwrap()["state"], "running");
    let follow = {
        let (addr, token, id) = (addr.clone(), token.clone(), id.clone());
        std::thread::spawn(move || http(&addr, &token, "GET", &format!("/jobs/{id}/output?follow=true"), None))
    };
    wait_until("the job starts writing", || job(&env, &id)["stdout_bytes"].as_u64().unwrap_or(0) > 0);
    open(&go);
    let (status, output) = follow.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&output), "start h\nend h\nerr h\n");
    let (_, only) = http(&addr, &token, "GET", &format!("/jobs/{id}/output?stream=stderr"), None);
    assert_eq!(only, b"err h\n");
    let (_, one) = http(&addr, &token, "GET", &format!("/jobs/{id}"), None);
    let one: Value = serde_json::from_slice(&one).unwrap();
    assert_eq!((one["state"].as_str(), one["exit_code"].as_i64()), (Some("failed"), Some(6)), "{one}");
    let (status, list) = http(&addr, &token, "GET", "/jobs?state=failed", None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&list).unwrap()["jobs"][0]["id"].to_string(), id);
    let (status, missing) = http(&addr, &token, "GET", "/jobs/987654/output", None);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&missing));
    let (status, _) = http(&addr, "wrong", "GET", "/jobs", None);
    assert_eq!(status, 401);
}

#[test]
fn wait_on_a_terminal_shows_progress() {
    let env = TestEnv::new();
    gated_script(&env);
    let (go, never) = (gate(&env, "go"), gate(&env, "never"));
    let quick = detach(&env, &["gated", go.to_str().unwrap(), "q", "0"]);
    let slow = detach(&env, &["gated", never.to_str().unwrap(), "s", "0"]);
    open(&go);
    let line = format!("{} --wait {quick} {slow}", env.bin("mcli-client").display());
    // script(1) runs the client on a terminal (scripts/test.sh installs it).
    let mut waiter = env
        .command("script")
        .args(["-qec", &line, "/dev/null"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("script(1) is needed for this test (install bsdutils): {e}"));
    let mut stdout = waiter.stdout.take().unwrap();
    let mut seen = Vec::new();
    let want = format!("1/2 done; running: {slow}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(&want) {
                break;
            }
        }
        let _ = tx.send((String::from_utf8_lossy(&seen).into_owned(), stdout));
    });
    let Ok((seen, mut rest)) = rx.recv_timeout(WAIT) else {
        let _ = waiter.kill();
        panic!("no progress line within {WAIT:?}");
    };
    assert!(seen.contains(&format!("1/2 done; running: {slow}")), "{seen:?}");
    env.server(&["cancel", &slow]).expect_code(0);
    let mut tail = String::new();
    let _ = rest.read_to_string(&mut tail);
    let status = waiter.wait().unwrap();
    assert!(tail.contains("2/2 done"), "{tail:?}");
    assert_eq!(status.code(), Some(130), "the worst status: the cancelled job's");
}

#[test]
fn usage_and_params_errors_say_what_is_wrong() {
    let env = TestEnv::new();
    let cases: [(&[&str], &str); 5] = [
        (&["--any", "echo", "x"], "mcli-client: --any goes with --wait ID..."),
        (&["--cancel-on-interrupt", "echo", "x"], "mcli-client: --cancel-on-interrupt goes with --attach ID..."),
        (&["-d", "--json", "echo", "x"], "cannot be used with"),
        (&["--attach", "seven"], "invalid digit"),
        (&["--on-interrupt", "pause", "echo", "x"], "possible values: cancel, detach"),
    ];
    for (args, says) in cases {
        let run = env.client(args);
        run.expect_code(2);
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }
    env.client(&["hello"]).expect_code(0);
    let raw = |request: &str| env.raw_lines("server", &format!("{request}\n"), 1).remove(0);
    let streamed = raw(
        r#"{"jsonrpc":"2.0","id":1,"method":"execute","params":{"command":"echo","detach":true,"stdin_stream":true}}"#,
    );
    assert!(streamed["error"]["message"].as_str().unwrap().contains("a detached job takes no `stdin_stream`"));
    let on_a_terminal = raw(
        r#"{"jsonrpc":"2.0","id":4,"method":"execute","params":{"command":"echo","detach":true,"tty":{"rows":24,"cols":80}}}"#,
    );
    assert!(
        on_a_terminal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`streams` or `tty`: its output goes to its files"),
        "{on_a_terminal}"
    );
    let empty = raw(r#"{"jsonrpc":"2.0","id":2,"method":"wait","params":{"ids":[]}}"#);
    assert!(empty["error"]["message"].as_str().unwrap().contains("`ids` must name 1 to 1000 jobs"), "{empty}");
    let missing = raw(r#"{"jsonrpc":"2.0","id":3,"method":"attach","params":{"id":5}}"#);
    assert_eq!(missing["error"]["code"], -32021, "{missing}");
    assert_eq!(missing["error"]["data"], serde_json::json!({"id": 5, "pruned": false}), "{missing}");
}

#[test]
fn http_bad_ids_and_queries_are_refused() {
    let env = TestEnv::new();
    env.server(&["start", "--http", "127.0.0.1:0"]).expect_code(0);
    let file = env.server_file("server");
    let (addr, token) = (file["http"].as_str().unwrap().to_owned(), file["token"].as_str().unwrap().to_owned());
    let (status, body) = http(&addr, &token, "GET", "/jobs/seven", None);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("`seven` is not a job id"));
    let (status, body) = http(&addr, &token, "GET", "/jobs/1/output?tail=3", None);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("query: follow (true or false), stream (stdout or stderr)"));
    let (status, body) = http(&addr, &token, "GET", "/jobs?sort=id", None);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("query: state (a job state), limit (a number)"));
    let (status, body) = http(&addr, &token, "GET", "/jobs/424242", None);
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("no job 424242"));
    // Jobs are listed from the state dir when no server runs.
    let id = detach(&env, &["echo", "kept"]);
    env.client(&["--wait", &id]).expect_code(0);
    env.server(&["stop"]).expect_code(0);
    let jobs = env.server(&["jobs"]);
    jobs.expect_code(0);
    assert!(jobs.stdout.contains("echo kept"), "{jobs:?}");
}

#[test]
fn a_job_of_an_editors_stdio_session_is_cancelled_through_the_daemon() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let mut session = env.server_cmd(&["--stdio"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = session.stdin.take().unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"execute\",\"params\":{\"command\":\"sleep\",\"args\":[\"120\"],\"detach\":true}}\n")
        .unwrap();
    let line = read_line_within(session.stdout.take().unwrap(), WAIT).expect("the session answers");
    let reply: Value = serde_json::from_str(&line).unwrap();
    let id = reply["result"]["id"].as_u64().unwrap_or_else(|| panic!("{reply}")).to_string();
    wait_until("the session's job runs", || job(&env, &id)["state"] == "running");
    // The daemon does not run it: the session, which does, is asked through the job's files.
    env.server(&["cancel", &id]).expect_code(0);
    wait_until("the job is cancelled", || job(&env, &id)["state"] == "cancelled");
    drop(stdin);
    Run::wait(session).expect_code(0);
}
