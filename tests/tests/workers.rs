//! Warm workers: manifests with a `[worker]` table, served by persistent Python processes
//! written with `scripts/mcli_worker.py`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mcli_tests::{Run, TestEnv, process_gone, wait_until};
use serde_json::Value;

/// The repository's `scripts/`, where `mcli_worker.py` is.
fn helper_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").canonicalize().expect("scripts dir")
}

const WORKER: &str = r#"
import os, subprocess, sys, time
from mcli_worker import command, serve

print("loading the model...")  # a stray print at import time must not break the protocol

STATE = {"calls": 0}

@command("counter")
def counter(*args):
    STATE["calls"] += 1
    print(f"pid={os.getpid()} calls={STATE['calls']} args={' '.join(args)}")

@command("status7")
def status7():
    return 7

@command("boom")
def boom():
    raise ValueError("the model is on fire")

@command("crash")
def crash():
    print("about to crash", flush=True)
    os._exit(3)

@command("slow")
def slow(seconds="30"):
    print(f"pid={os.getpid()}", flush=True)
    time.sleep(float(seconds))

@command("stubborn")
def stubborn():
    print(f"pid={os.getpid()}", flush=True)
    while True:
        try:
            time.sleep(30)
        except KeyboardInterrupt:
            print("not stopping", flush=True)

@command("where")
def where():
    print(os.getcwd())

@command("garble")
def garble():
    import mcli_worker
    mcli_worker._PROTOCOL_OUT.write("this is not json-rpc\n")
    mcli_worker._PROTOCOL_OUT.flush()

@command("upper")
def upper():
    data = sys.stdin.read()
    print(data.upper(), end="")

@command("child")
def child():
    subprocess.run(["echo", "from a child process"])
    print("done")

@command("rawname")
def rawname():
    print(b"caf\xe9".decode("utf-8", "surrogateescape"))

sys.__stderr__.write("worker log line: model loaded\n")
sys.__stderr__.flush()

serve()
"#;

/// A commands dir with `worker.py` and one manifest per command name, all served by it.
fn setup(env: &TestEnv, worker_table: &str) -> PathBuf {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("worker.py"), WORKER).unwrap();
    let helper = helper_dir();
    for name in
        ["counter", "status7", "boom", "crash", "slow", "stubborn", "where", "garble", "upper", "child", "rawname"]
    {
        let manifest = format!(
            "run = [\"python3\", \"worker.py\"]\nenv = {{ PYTHONPATH = \"{}\" }}\n[worker]\n{worker_table}\n",
            helper.display()
        );
        std::fs::write(dir.join(format!("{name}.toml")), manifest).unwrap();
    }
    dir
}

fn field(text: &str, name: &str) -> String {
    text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
}

/// The first line a running client prints (the worker's `pid=` line).
fn first_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    line
}

fn status(env: &TestEnv) -> Value {
    let run = env.server(&["status", "--json"]);
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn warm_calls_reuse_the_worker_and_its_state() {
    let env = TestEnv::new();
    setup(&env, "max_workers = 1");
    let first = env.client(&["-q", "counter", "a"]);
    first.expect_code(0);
    let second = env.client(&["-q", "counter", "b", "c"]);
    second.expect_code(0);
    assert_eq!(field(&first.stdout, "pid"), field(&second.stdout, "pid"), "the same worker: {first:?} {second:?}");
    assert_eq!((field(&first.stdout, "calls"), field(&second.stdout, "calls")), ("1".into(), "2".into()));
    assert!(second.stdout.contains("args=b c"), "{}", second.stdout);

    let workers = status(&env)["workers"].clone();
    let list = workers.as_array().unwrap();
    assert_eq!(list.len(), 1, "{workers}");
    assert_eq!(list[0]["command"], "counter");
    assert_eq!(list[0]["state"], "idle");
    assert_eq!(list[0]["calls"], 2);
    assert_eq!(list[0]["pid"].to_string(), field(&first.stdout, "pid"));

    let listed = env.server(&["commands", "--json"]);
    let commands: Value = serde_json::from_str(&listed.stdout).unwrap();
    let counter = commands["commands"].as_array().unwrap().iter().find(|c| c["name"] == "counter").unwrap().clone();
    assert_eq!(counter["worker"], true, "{counter}");
}

#[test]
fn exit_codes_and_exceptions() {
    let env = TestEnv::new();
    setup(&env, "");
    env.client(&["-q", "status7"]).expect_code(7);
    let boom = env.client(&["-q", "boom"]);
    boom.expect_code(1);
    assert!(
        boom.stderr.contains("Traceback") && boom.stderr.contains("ValueError: the model is on fire"),
        "{}",
        boom.stderr
    );
    // The worker survives a failing command.
    env.client(&["-q", "counter"]).expect_code(0);
}

#[test]
fn a_crash_mid_call_fails_clearly_and_the_next_call_gets_a_new_worker() {
    let env = TestEnv::new();
    setup(&env, "");
    let before = env.client(&["-q", "counter"]);
    before.expect_code(0);
    let crash = env.client(&["-q", "crash"]);
    crash.expect_code(1);
    assert_eq!(crash.stdout, "about to crash\n");
    assert!(crash.stderr.contains("the worker exited during the call"), "{}", crash.stderr);
    assert!(crash.stderr.contains("the next call starts a new worker"), "{}", crash.stderr);
    let after = env.client(&["-q", "counter"]);
    after.expect_code(0);
    assert_ne!(field(&before.stdout, "pid"), field(&after.stdout, "pid"));
    assert_eq!(field(&after.stdout, "calls"), "1", "a new worker starts afresh");
}

#[test]
fn idle_workers_are_stopped() {
    let env = TestEnv::new();
    setup(&env, "idle_timeout = 0.5");
    let run = env.client(&["-q", "counter"]);
    run.expect_code(0);
    let pid: u32 = field(&run.stdout, "pid").parse().unwrap();
    wait_until("the idle worker is stopped", || status(&env)["workers"] == serde_json::json!([]));
    wait_until("its process is gone", || process_gone(pid));
}

#[test]
fn timeouts_and_cancels_interrupt_the_call_and_the_worker_stays_warm() {
    let env = TestEnv::new();
    setup(&env, "max_workers = 1");
    // A warm worker first: a cold one could still be starting when the 0.5 s are up.
    env.client(&["-q", "counter"]).expect_code(0);
    let started = Instant::now();
    let timed_out = env.client(&["-q", "-t", "0.5", "slow", "30"]);
    timed_out.expect_code(124);
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = field(&timed_out.stdout, "pid");
    let after = env.client(&["-q", "counter"]);
    after.expect_code(0);
    assert_eq!(field(&after.stdout, "pid"), pid, "the same worker serves the next call");

    // Ctrl-C at the client cancels the call the same way.
    let mut child =
        env.client_cmd(&["-q", "slow", "30"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let line = first_line(&mut child);
    assert_eq!(field(&line, "pid"), pid);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let run = Run::wait(child);
    run.expect_code(130);
    let after = env.client(&["-q", "counter"]);
    after.expect_code(0);
    assert_eq!(field(&after.stdout, "pid"), pid, "still the same worker");
    assert!(after.stdout.contains("calls=3"), "its state survived: {}", after.stdout);
}

#[test]
fn a_call_that_ignores_its_cancel_costs_the_worker() {
    let env = TestEnv::new();
    setup(&env, "max_workers = 1");
    env.client(&["-q", "counter"]).expect_code(0);
    let run = env.client(&["-q", "-t", "0.5", "stubborn"]);
    run.expect_code(124);
    assert!(run.stdout.contains("not stopping"), "the interrupt reached it: {}", run.stdout);
    let pid: u32 = field(&run.stdout, "pid").parse().unwrap();
    wait_until("the stuck worker is killed", || process_gone(pid));
    let next = env.client(&["-q", "counter"]);
    next.expect_code(0);
    assert_ne!(field(&next.stdout, "pid"), pid.to_string(), "a new worker");
}

#[test]
fn a_worker_ends_when_the_server_dies_mid_call() {
    let env = TestEnv::new();
    setup(&env, "");
    let mut child =
        env.client_cmd(&["-q", "slow", "300"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let line = first_line(&mut child);
    let pid: u32 = field(&line, "pid").parse().unwrap();
    let server = env.server_file("server")["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("the orphaned worker exits", || process_gone(pid));
    let run = Run::wait(child);
    assert_ne!(run.code, Some(0), "the call did not complete");
}

#[test]
fn max_workers_bounds_the_processes() {
    let env = TestEnv::new();
    setup(&env, "max_workers = 2");
    let children: Vec<_> = (0..4)
        .map(|_| env.client_cmd(&["-q", "slow", "0.5"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    let mut pids: Vec<String> = children
        .into_iter()
        .map(Run::wait)
        .map(|r| {
            r.expect_code(0);
            field(&r.stdout, "pid")
        })
        .collect();
    pids.sort();
    pids.dedup();
    assert!(pids.len() <= 2, "at most 2 workers: {pids:?}");
}

#[test]
fn calls_run_in_the_clients_directory() {
    let env = TestEnv::new();
    setup(&env, "");
    let dir = env.root.path().join("somewhere");
    std::fs::create_dir(&dir).unwrap();
    let run = Run::of(env.client_cmd(&["-q", "where"]).current_dir(&dir));
    run.expect_code(0);
    assert_eq!(run.stdout, format!("{}\n", dir.display()));
}

#[test]
fn without_a_server_a_worker_command_runs_once_locally() {
    let mut env = TestEnv::new();
    setup(&env, "");
    env.set_env("MCLI_DAEMON_ROUTING", "false");
    let run = env.client(&["counter", "local"]);
    run.expect_code(0);
    assert!(run.stdout.contains("calls=1 args=local"), "{}", run.stdout);
    env.client(&["status7"]).expect_code(7);
    // Piped input reaches the one-shot worker as it does a warm one.
    let mut child = env.client_cmd(&["upper"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"piped to a local worker\n").unwrap();
    drop(child.stdin.take());
    let run = Run::wait(child);
    run.expect_code(0);
    assert_eq!(run.stdout, "PIPED TO A LOCAL WORKER\n");
    assert!(env.server_pids().is_empty());
}

#[test]
fn a_worker_that_breaks_the_protocol_is_replaced() {
    let env = TestEnv::new();
    setup(&env, "");
    let before = env.client(&["-q", "counter"]);
    before.expect_code(0);
    let garbled = env.client(&["-q", "garble"]);
    garbled.expect_code(1);
    assert!(garbled.stderr.contains("not JSON-RPC"), "{}", garbled.stderr);
    let after = env.client(&["-q", "counter"]);
    after.expect_code(0);
    assert_ne!(field(&before.stdout, "pid"), field(&after.stdout, "pid"));
}

#[test]
fn a_workers_stderr_goes_to_the_server_log() {
    let env = TestEnv::new();
    setup(&env, "");
    env.client(&["-q", "counter"]).expect_code(0);
    wait_until("the worker's stderr is logged", || env.log("server").contains("worker log line: model loaded"));
}

#[test]
fn stdin_stray_output_and_odd_bytes_do_not_break_a_worker() {
    let env = TestEnv::new();
    setup(&env, "");
    let mut child = env
        .client_cmd(&["-q", "upper"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"piped text\n").unwrap();
    drop(child.stdin.take());
    let run = Run::wait(child);
    run.expect_code(0);
    assert_eq!(run.stdout, "PIPED TEXT\n");

    // A child process writing to the worker's standard output goes to the log, not the protocol.
    let run = env.client(&["-q", "child"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "done\n");
    wait_until("the child's output is logged", || env.log("server").contains("from a child process"));

    // Text that is not UTF-8 (decoded with surrogateescape) comes through as its bytes.
    let out = std::process::Command::new(env.bin("mcli-client"));
    let _ = out;
    let run = env.client_cmd(&["-q", "rawname"]).output().unwrap();
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(run.stdout, b"caf\xe9\n");
    let first = env.client(&["-q", "counter"]);
    let second = env.client(&["-q", "counter"]);
    assert_eq!(field(&first.stdout, "pid"), field(&second.stdout, "pid"), "the worker survived all that");
}

#[test]
fn the_timeout_covers_waiting_for_input_that_never_ends() {
    let mut env = TestEnv::new();
    setup(&env, "max_workers = 1");
    for local in [false, true] {
        if local {
            env.set_env("MCLI_DAEMON_ROUTING", "false");
        }
        // Standard input is a pipe this test keeps open and never writes to.
        let mut child = env
            .client_cmd(&["-q", "-t", "0.5", "upper"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _open_input = child.stdin.take();
        let run = Run::wait(child);
        run.expect_code(124);
    }
    // The server's worker was never taken by the waiting call, and serves the next one.
    env.remove_env("MCLI_DAEMON_ROUTING");
    let status = status(&env);
    assert_eq!(status["workers"].as_array().map(Vec::len), Some(0), "{status}");
    env.client(&["-q", "counter"]).expect_code(0);
}

#[test]
fn input_over_16_mib_is_refused_with_a_clear_message() {
    let mut env = TestEnv::new();
    setup(&env, "");
    for local in [false, true] {
        if local {
            env.set_env("MCLI_DAEMON_ROUTING", "false");
        }
        let mut child = env
            .client_cmd(&["-q", "upper"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        // The client stops reading once the limit is passed: a failed write is expected.
        let writer = std::thread::spawn(move || {
            let block = vec![b'x'; 1024 * 1024];
            for _ in 0..17 {
                if std::io::Write::write_all(&mut input, &block).is_err() {
                    break;
                }
            }
        });
        let run = Run::wait(child);
        let _ = writer.join();
        assert_ne!(run.code, Some(0), "local={local}: {run:?}");
        assert!(
            run.stderr.contains("standard input for a worker command is limited to 16 MiB"),
            "local={local}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_worker_program_that_cannot_be_found_exits_127_with_its_name_both_ways() {
    let env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ghost.toml"), "run = [\"no-such-worker-program\"]\n[worker]\n").unwrap();
    let expected = "cannot run `no-such-worker-program` for ";
    let served = env.client(&["-q", "ghost"]);
    served.expect_code(127);
    assert!(served.stderr.contains(expected) && served.stderr.contains("nor on PATH"), "{}", served.stderr);
    env.server(&["stop"]).expect_code(0);
    let local = env.client_cmd(&["-q", "-a", "local", "ghost"]).env("MCLI_DAEMON_ROUTING", "false").output().unwrap();
    assert_eq!(local.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(stderr.contains(expected) && stderr.contains("nor on PATH"), "{stderr}");
}

#[test]
fn a_worker_program_that_cannot_start_exits_126() {
    let env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    // A file that is there but not executable: found, but it cannot run.
    std::fs::write(dir.join("plain.txt"), "not a program\n").unwrap();
    std::fs::write(dir.join("stuck.toml"), "run = [\"./plain.txt\"]\n[worker]\n").unwrap();
    let run = env.client(&["-q", "stuck"]);
    run.expect_code(126);
    assert!(run.stderr.contains("cannot start the worker") && run.stderr.contains("plain.txt"), "{}", run.stderr);
}

/// A worker exactly as the README shows it, in a commands dir of its own, with no PYTHONPATH
/// and no copy of the helper: mcli provides `mcli_worker` itself.
const README_WORKER: &str = r#"from mcli_worker import command, serve

GREETING = "warm hello"

@command("greet")
def greet(name="World"):
    print(f"{GREETING}, {name}")

serve()
"#;

#[test]
fn a_worker_written_as_the_readme_shows_needs_no_copy_of_the_helper() {
    let mut env = TestEnv::new();
    env.remove_env("PYTHONPATH");
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("greet.py"), README_WORKER).unwrap();
    std::fs::write(dir.join("greet.toml"), "run = [\"python3\", \"greet.py\"]\n[worker]\n").unwrap();
    let served = env.client(&["-q", "greet", "Ada"]);
    served.expect_code(0);
    assert_eq!(served.stdout, "warm hello, Ada\n");
    env.server(&["stop"]).expect_code(0);
    env.set_env("MCLI_DAEMON_ROUTING", "false");
    let local = env.client(&["greet", "Grace"]);
    local.expect_code(0);
    assert_eq!(local.stdout, "warm hello, Grace\n");
}

#[test]
fn a_worker_that_dies_at_start_shows_its_last_lines_of_stderr() {
    let env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("broken.py"),
        "from mcli_worker import command, serve\nimport no_such_module_here\nserve()\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.toml"), "run = [\"python3\", \"broken.py\"]\n[worker]\n").unwrap();
    let run = env.client(&["-q", "broken"]);
    run.expect_code(1);
    assert!(run.stderr.contains("the worker exited during the call"), "{}", run.stderr);
    assert!(run.stderr.contains("the worker's last lines on standard error:"), "{}", run.stderr);
    assert!(run.stderr.contains("No module named 'no_such_module_here'"), "{}", run.stderr);
}

#[test]
fn editing_a_workers_source_starts_a_new_worker_before_the_next_call() {
    let env = TestEnv::new();
    let dir = setup(&env, "max_workers = 1");
    let first = env.client(&["-q", "counter"]);
    first.expect_code(0);
    let old_pid: u32 = field(&first.stdout, "pid").parse().unwrap();
    // An edit of the worker's source, next to its manifest.
    let source = std::fs::read_to_string(dir.join("worker.py")).unwrap();
    std::fs::write(dir.join("worker.py"), source.replace("calls={STATE['calls']}", "calls={STATE['calls']} v2"))
        .unwrap();
    let second = env.client(&["-q", "counter"]);
    second.expect_code(0);
    assert!(second.stdout.contains("calls=1 v2"), "the new source, fresh state: {}", second.stdout);
    assert_ne!(field(&second.stdout, "pid"), old_pid.to_string());
    wait_until("the old worker is stopped", || process_gone(old_pid));
}

#[test]
fn the_workers_of_a_removed_manifest_stop_as_soon_as_they_are_idle() {
    let env = TestEnv::new();
    let dir = setup(&env, "idle_timeout = 600");
    let run = env.client(&["-q", "counter"]);
    run.expect_code(0);
    let pid: u32 = field(&run.stdout, "pid").parse().unwrap();
    // Every manifest that runs worker.py goes: nothing runs that program any more.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::remove_file(path).unwrap();
        }
    }
    wait_until("the idle worker of the removed manifests is stopped", || process_gone(pid));
    assert_eq!(status(&env)["workers"], serde_json::json!([]));
}

#[test]
fn waiting_for_a_free_worker_counts_against_the_time_limit() {
    let env = TestEnv::new();
    setup(&env, "max_workers = 1");
    let mut first = env.client_cmd(&["-q", "slow", "4"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    first_line(&mut first);
    let started = Instant::now();
    env.client(&["-q", "-t", "1", "counter"]).expect_code(124);
    assert!(started.elapsed() < Duration::from_millis(3500), "timed out while waiting: {:?}", started.elapsed());
    Run::wait(first).expect_code(0);
}

#[test]
fn warm_workers_and_their_state_survive_a_restart() {
    let env = TestEnv::new();
    setup(&env, "max_workers = 1");
    let before = env.client(&["-q", "counter", "a"]);
    before.expect_code(0);
    let old_server = env.server_file("server")["pid"].clone();
    env.server(&["restart"]).expect_code(0);
    assert_ne!(env.server_file("server")["pid"], old_server, "a new server");
    let after = env.client(&["-q", "counter", "b"]);
    after.expect_code(0);
    assert_eq!(field(&before.stdout, "pid"), field(&after.stdout, "pid"), "the same worker: {before:?} {after:?}");
    assert_eq!(field(&after.stdout, "calls"), "2", "its state kept: {}", after.stdout);
    let workers = status(&env)["workers"].clone();
    assert_eq!(workers[0]["calls"], 2, "{workers}");
    // The old server has gone; the worker is the new server's now, and goes with it.
    let old = old_server.as_u64().unwrap() as u32;
    wait_until("the old server to exit", || process_gone(old));
    let again = env.client(&["-q", "counter", "c"]);
    assert_eq!(field(&again.stdout, "calls"), "3", "{}", again.stdout);
    let worker: u32 = field(&again.stdout, "pid").parse().unwrap();
    env.server(&["stop"]).expect_code(0);
    wait_until("the worker to end with its server", || process_gone(worker));
}

#[test]
fn a_worker_whose_source_changed_across_a_restart_is_replaced() {
    let env = TestEnv::new();
    let dir = setup(&env, "max_workers = 1");
    let before = env.client(&["-q", "counter", "a"]);
    before.expect_code(0);
    env.server(&["restart"]).expect_code(0);
    // Edited while the new server runs: the adopted pool serves the old definition, so retires.
    let source = std::fs::read_to_string(dir.join("worker.py")).unwrap();
    std::fs::write(dir.join("worker.py"), format!("{source}\n# edited\n")).unwrap();
    let after = env.client(&["-q", "counter", "b"]);
    after.expect_code(0);
    assert_ne!(field(&before.stdout, "pid"), field(&after.stdout, "pid"), "a new worker: {}", after.stdout);
    assert_eq!(field(&after.stdout, "calls"), "1");
}
