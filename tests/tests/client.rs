//! The `mcli-client` command line: exit statuses, the alternate editor, routing, `--json`, and
//! what it says when things go wrong.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use mcli_tests::{Run, TestEnv};

#[test]
fn exit_statuses_pass_through() {
    let env = TestEnv::new();
    env.client(&["-q", "exit", "0"]).expect_code(0);
    env.client(&["-q", "exit", "42"]).expect_code(42);
    let usage = env.client(&["-q", "hello", "--frobnicate"]);
    usage.expect_code(2);
    assert_eq!(usage.stderr, "hello: unknown option `--frobnicate`\nusage: hello [NAME] [--verbose]\n");
    env.client(&["-q", "-t", "0.2", "sleep", "10"]).expect_code(124);
}

#[test]
fn an_unknown_command_is_127_with_suggestions() {
    let env = TestEnv::new();
    let run = env.client(&["-q", "ell"]);
    run.expect_code(127);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "mcli-client: unknown command `ell`; did you mean `hello`?\n");
    let run = env.client(&["-q", "-a", "local", "helo"]);
    run.expect_code(127);
    assert_eq!(run.stderr, "mcli-client: unknown command `helo`; did you mean `hello`?\n");
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    let run = env.client(&[]);
    run.expect_code(2);
    assert!(run.stderr.contains("COMMAND"), "{}", run.stderr);
    let run = env.client(&["-t", "soon", "hello"]);
    run.expect_code(2);
    assert!(run.stderr.contains("`soon` is not a positive number of seconds"), "{}", run.stderr);
    assert!(env.server_pids().is_empty(), "a usage error starts nothing");
}

#[test]
fn options_after_the_command_belong_to_it() {
    let env = TestEnv::new();
    let run = env.client(&["-q", "echo", "--json", "-q", "-t", "x"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "--json -q -t x\n");
}

#[test]
fn commands_run_in_the_clients_directory() {
    let env = TestEnv::new();
    let dir = env.root.path().join("work dir");
    std::fs::create_dir(&dir).unwrap();
    let run = Run::of(env.client_cmd(&["-q", "pwd"]).current_dir(&dir));
    run.expect_code(0);
    assert_eq!(run.stdout, format!("{}\n", dir.display()));
}

#[test]
fn json_prints_the_result_object() {
    let env = TestEnv::new();
    let run = env.client(&["-q", "--json", "hello", "you"]);
    run.expect_code(0);
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(result["command"], "hello");
    assert_eq!(result["status"], "completed");
    assert_eq!(result["exit_code"], 0);
    assert_eq!(result["stdout"], "Hello you!\n");
    assert_eq!(result["truncated"], false);
    let failed = env.client(&["-q", "--json", "exit", "5"]);
    failed.expect_code(5);
    let result: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(result["status"], "failed");
    assert_eq!(result["exit_code"], 5);
}

#[test]
fn alternate_editor_local_runs_in_process_and_starts_nothing() {
    let mut env = TestEnv::new();
    let run = env.client(&["--alternate-editor=local", "hello", "World", "--verbose"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello World! (verbose mode)\n");
    assert_eq!(run.stderr, "");
    env.client(&["-a", "local", "exit", "9"]).expect_code(9);
    env.client(&["-a", "local", "-t", "0.1", "sleep", "5"]).expect_code(124);
    let json = env.client(&["-a", "local", "--json", "echo", "hi"]);
    json.expect_code(0);
    assert!(json.stdout.contains("\"stdout\":\"hi\\n\""), "{}", json.stdout);

    env.set_env("MCLI_ALTERNATE_EDITOR", "local");
    env.client(&["hello"]).expect_code(0);
    assert!(env.server_pids().is_empty(), "no server was started");
    assert!(!env.socket("server").exists());

    // An explicit empty alternate editor overrides the variable and starts a server.
    env.client(&["-q", "-a", "", "hello"]).expect_code(0);
    assert_eq!(env.server_pids().len(), 1);
}

#[test]
fn local_is_only_a_fallback_when_a_server_runs() {
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    env.client(&["-q", "-a", "local", "hello"]).expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&env.server(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["executed_total"], 2, "the running server served both calls");
}

#[test]
fn daemon_routing_false_always_runs_locally() {
    let mut env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    env.set_env("MCLI_DAEMON_ROUTING", "false");
    let run = env.client(&["hello", "local"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello local!\n");
    let status: serde_json::Value = serde_json::from_str(&env.server(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["executed_total"], 1, "the server did not see the routed-off call");
}

#[test]
fn alternate_editor_program_runs_with_the_command() {
    let env = TestEnv::new();
    let run = env.client(&["-a", "/bin/echo", "hello", "--verbose", "x"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "hello --verbose x\n");
    assert!(env.server_pids().is_empty());

    let missing = env.client(&["-a", "/nonexistent/editor", "hello"]);
    missing.expect_code(69);
    assert!(missing.stderr.contains("the alternate editor `/nonexistent/editor` cannot run"), "{}", missing.stderr);
}

#[test]
fn an_incompatible_server_is_reported_in_plain_words() {
    let env = TestEnv::new();
    // A stand-in for a server from another release, which refuses this client's protocol.
    let fake = fake_server(&env, |stream, request| {
        assert_eq!(request["params"]["protocol"], 1, "the client announces its protocol");
        let reply = serde_json::json!({
            "jsonrpc": "2.0", "id": request["id"],
            "error": {"code": -32005, "message": "incompatible protocol: the client speaks protocol 1, this server (mcli 9.0.0) speaks protocol 2"}
        });
        (&*stream).write_all(format!("{reply}\n").as_bytes()).unwrap();
    });
    let run = env.client(&["hello"]);
    fake.join().unwrap();
    run.expect_code(69);
    assert!(
        run.stderr.contains("the client speaks protocol 1, this server (mcli 9.0.0) speaks protocol 2"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_server_that_dies_mid_command_is_reported() {
    let env = TestEnv::new();
    // Hang up without an answer, as a crashing server would.
    let fake = fake_server(&env, |_, _| {});
    let run = env.client(&["sleep", "1"]);
    fake.join().unwrap();
    run.expect_code(69);
    assert_eq!(run.stderr, "mcli-client: the server closed the connection while `sleep` ran\n");
}

/// A stand-in server on the socket of `env`: takes one connection, reads one request and hands
/// it to `answer`, then hangs up.
fn fake_server(
    env: &TestEnv,
    answer: impl FnOnce(&UnixStream, serde_json::Value) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    env.create_runtime_dir();
    let listener = UnixListener::bind(env.socket("server")).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        answer(&stream, serde_json::from_str(&line).unwrap());
    })
}

#[test]
fn json_errors_are_json_on_stdout_besides_the_message_on_stderr() {
    let env = TestEnv::new();
    let unknown = env.client(&["-q", "--json", "helo"]);
    unknown.expect_code(127);
    let error: serde_json::Value = serde_json::from_str(unknown.stdout.trim()).unwrap();
    assert_eq!(error["error"]["code"], -32001);
    assert!(error["error"]["message"].as_str().unwrap().contains("did you mean `hello`?"), "{error}");
    assert!(unknown.stderr.contains("mcli-client: unknown command `helo`"), "{}", unknown.stderr);
    env.server(&["stop"]).expect_code(0);
    let status = env.server(&["status", "--json"]);
    status.expect_code(1);
    let error: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert_eq!(error["error"]["code"], 1);
    assert!(error["error"]["message"].as_str().unwrap().contains("no server named `server` is running"), "{error}");
}

/// Runs `mcli-client ARGS` on a pseudo-terminal (with `script`), returning what the terminal
/// showed and the client's exit status.
fn on_a_terminal(env: &TestEnv, args: &str) -> (String, Option<i32>) {
    let line = format!("{} {args}", env.bin("mcli-client").display());
    let out = env.command("script").args(["-qec", &line, "/dev/null"]).output().expect("script (util-linux) runs");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

#[test]
fn on_a_terminal_the_client_says_why_a_command_ended_early() {
    let env = TestEnv::new();
    let (shown, code) = on_a_terminal(&env, "-t 0.3 sleep 5");
    assert_eq!(code, Some(124), "{shown}");
    assert!(shown.contains("mcli-client: `sleep` timed out after 0.3 s (the call's timeout (-t))"), "{shown}");
    // From the config, with the file named; and not a word with -q, nor when stderr is no terminal.
    let config = env.config_home.join("mcli/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "[api_daemon]\ncommand_timeout = 0.3\n").unwrap();
    env.server(&["stop"]).expect_code(0);
    let (shown, _) = on_a_terminal(&env, "sleep 5");
    assert!(shown.contains(&format!("timed out after 0.3 s (command_timeout in {})", config.display())), "{shown}");
    let (shown, _) = on_a_terminal(&env, "-q sleep 5");
    assert!(!shown.contains("timed out"), "{shown}");
    let piped = env.client(&["sleep", "5"]);
    piped.expect_code(124);
    assert!(!piped.stderr.contains("timed out"), "{}", piped.stderr);
}

#[test]
fn on_a_terminal_the_client_says_when_it_waits_for_a_free_slot() {
    let mut env = TestEnv::new();
    env.use_config("[api_daemon]\nmax_concurrent_commands = 1\n");
    let running = env
        .client_cmd(&["-q", "sleep", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_for_active(mcli_tests::Active::Any);
    let (shown, code) = on_a_terminal(&env, "echo after the wait");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("mcli-client: waiting for a free slot, none ahead"), "{shown}");
    assert!(shown.contains("after the wait"), "{shown}");
    Run::wait(running).expect_code(0);
}

#[test]
fn printing_to_a_pipe_closed_early_ends_quietly_as_sigpipe_would() {
    let env = TestEnv::new();
    env.client(&["-q", "hello"]).expect_code(0);
    for (program, args) in [
        ("mcli-client", vec!["--json", "hello"]),
        ("mcli-server", vec!["history"]),
        ("mcli-server", vec!["status", "--json"]),
    ] {
        // The reading end is closed before the program starts, so that its first write fails
        // however soon it comes.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut cmd = env.command(env.bin(program));
        cmd.args(&args).stdout(writer).stderr(std::process::Stdio::piped());
        let out = cmd.spawn().expect("spawn").wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{program} {args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{program} {args:?}: {stderr}");
    }
}
