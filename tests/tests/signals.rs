//! Signals to the daemon and to `mcli-server --stdio`, as editors and process managers send
//! them: no command outlives the process that runs it.

#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use mcli_tests::{Run, TestEnv, process_gone, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A script `long` that writes its pid to `pidfile`, then waits.
fn long_command(env: &TestEnv, pidfile: &std::path::Path) {
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("long");
    std::fs::write(&path, format!("#!/bin/sh\necho $$ > {}\nexec sleep 300\n", pidfile.display())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn read_pid(pidfile: &std::path::Path) -> u32 {
    wait_until("the command has started", || {
        std::fs::read_to_string(pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    });
    std::fs::read_to_string(pidfile).unwrap().trim().parse().unwrap()
}

/// Starts `mcli-server --stdio`, runs `long` in it, sends `signal`, and checks that the session
/// exits and its command with it.
fn stdio_session_ends_its_command_on(signal: Signal) {
    let env = TestEnv::new();
    let pidfile = env.root.path().join("command.pid");
    long_command(&env, &pidfile);
    let mut server = env.server_cmd(&["--stdio"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"execute","params":{"command":"long","args":[]}}"#;
    server.stdin.as_mut().unwrap().write_all(format!("{request}\n").as_bytes()).unwrap();
    let command = read_pid(&pidfile);
    kill(Pid::from_raw(server.id() as i32), signal).unwrap();
    let session = Run::wait(server);
    assert!(session.code.is_some(), "the session exits by itself, not by the signal: {session:?}");
    wait_until("the session's command is ended", || process_gone(command));
}

#[test]
fn sigterm_to_a_stdio_session_ends_its_running_command() {
    stdio_session_ends_its_command_on(Signal::SIGTERM);
}

#[test]
fn sigint_to_a_stdio_session_ends_its_running_command() {
    stdio_session_ends_its_command_on(Signal::SIGINT);
}

#[test]
fn sighup_to_a_stdio_session_ends_its_running_command() {
    stdio_session_ends_its_command_on(Signal::SIGHUP);
}

#[test]
fn shutdown_not_graceful_then_exit_ends_a_stdio_session_and_its_command_at_once() {
    let env = TestEnv::new();
    let pidfile = env.root.path().join("command.pid");
    long_command(&env, &pidfile);
    let mut server = env.server_cmd(&["--stdio"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let stdin = server.stdin.as_mut().unwrap();
    stdin
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"execute\",\"params\":{\"command\":\"long\",\"args\":[]}}\n",
        )
        .unwrap();
    let command = read_pid(&pidfile);
    let started = std::time::Instant::now();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"shutdown\",\"params\":{\"graceful\":false}}\n")
        .unwrap();
    stdin.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}\n").unwrap();
    let session = Run::wait(server);
    assert_eq!(session.code, Some(0), "{session:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "well within the 10 s grace: {:?}",
        started.elapsed()
    );
    wait_until("the session's command is ended", || process_gone(command));
}

#[test]
fn sighup_to_the_daemon_does_not_end_it() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let pid = env.status_json()["pid"].as_u64().unwrap() as i32;
    kill(Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    wait_until("the reload after SIGHUP is logged", || env.log("server").contains("SIGHUP: reloaded"));
    env.client(&["-q", "hello"]).expect_code(0);
    assert_eq!(env.status_json()["pid"].as_u64(), Some(pid as u64));
}

#[test]
fn a_server_started_where_signals_are_ignored_runs_commands_with_the_default_actions() {
    let env = TestEnv::new();
    let dir = env.config_home.join("mcli/commands");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ignored");
    std::fs::write(&path, "#!/bin/sh\nsed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    // As a client run in the background of a script would start it: SIGQUIT ignored, and
    // job control signals ignored by its parent.
    let mut start = env.command("sh");
    start.arg("-c").arg("trap '' QUIT TSTP TTIN TTOU USR1; exec \"$0\" start").arg(env.bin("mcli-server"));
    Run::of(&mut start).expect_code(0);
    let run = env.client(&["-q", "ignored"]);
    run.expect_code(0);
    let mask = u64::from_str_radix(run.stdout.trim(), 16).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    for signal in [Signal::SIGQUIT, Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU, Signal::SIGUSR1] {
        assert_eq!(mask & (1 << (signal as u64 - 1)), 0, "{signal} is ignored by the command: {mask:#x}");
    }
    env.server(&["stop"]).expect_code(0);
}
