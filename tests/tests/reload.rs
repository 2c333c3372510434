//! Live configuration: `mcli-server reload`, SIGHUP and a change of the config file put a new
//! config in force without dropping running commands; a broken one is refused whole; `config
//! check` and `config show` work without a server.

#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use mcli_tests::{Active, Run, TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

fn write_config(env: &TestEnv, text: &str) -> std::path::PathBuf {
    let dir = env.config_home.join("mcli");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn config_in_force(env: &TestEnv) -> Value {
    env.status_json()["config"].clone()
}

#[test]
fn reload_applies_new_limits_while_a_command_runs_on() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nmax_concurrent_commands = 1\n");
    env.server(&["start"]).expect_code(0);
    let running = env.client_cmd(&["-q", "sleep", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    env.wait_for_active(Active::Any);
    write_config(&env, "[api_daemon]\nmax_concurrent_commands = 3\ncommand_timeout = 42\ndebug = true\n");
    let reload = env.server(&["reload"]);
    reload.expect_code(0);
    assert!(
        reload.stdout.contains("in force now: api_daemon.command_timeout, api_daemon.max_concurrent_commands"),
        "{}",
        reload.stdout
    );
    assert!(reload.stdout.contains("unchanged until `mcli-server restart`: api_daemon.debug"), "{}", reload.stdout);
    let config = config_in_force(&env);
    assert_eq!(
        (config["api_daemon"]["max_concurrent_commands"].as_u64(), config["api_daemon"]["debug"].as_bool()),
        (Some(3), Some(false))
    );
    // A second call runs beside the first now: the new limit is in force.
    env.client(&["-q", "echo", "beside"]).expect_code(0);
    Run::wait(running).expect_code(0);
}

#[test]
fn a_config_with_errors_is_refused_whole_with_every_error() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\ncommand_timeout = 42\n");
    env.server(&["start"]).expect_code(0);
    let file = write_config(&env, "[api_daemon]\ncommand_timeout = 7\nport = 0\n[server]\nkill_grace = -1\n");
    let reload = env.server(&["reload"]);
    reload.expect_code(1);
    let line = |n: usize, key: &str| format!("config file {}, line {n}: `{key}`", file.display());
    assert!(reload.stderr.contains(&line(3, "api_daemon.port")), "{}", reload.stderr);
    assert!(reload.stderr.contains(&line(5, "server.kill_grace")), "{}", reload.stderr);
    assert!(reload.stderr.contains("the one in force is unchanged"), "{}", reload.stderr);
    assert_eq!(config_in_force(&env)["api_daemon"]["command_timeout"], 42.0, "nothing of it was taken");
    assert!(env.log("server").contains("reload refused"), "{}", env.log("server"));
    let check = env.server(&["config", "check"]);
    check.expect_code(1);
    assert!(
        check.stderr.contains(&line(3, "api_daemon.port")) && check.stderr.contains("2 errors in the config"),
        "{}",
        check.stderr
    );
}

#[test]
fn sighup_reloads_the_daemon_and_never_ends_it() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\ncommand_timeout = 42\n");
    env.server(&["start"]).expect_code(0);
    let pid = env.status_json()["pid"].as_u64().unwrap() as i32;
    write_config(&env, "[api_daemon]\ncommand_timeout = 9\n");
    kill(Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    wait_until("the new timeout is in force", || config_in_force(&env)["api_daemon"]["command_timeout"] == 9.0);
    assert_eq!(env.status_json()["pid"].as_u64(), Some(pid as u64), "the same daemon");
}

#[test]
fn a_change_of_the_config_file_is_noticed_by_itself() {
    let env = TestEnv::new();
    write_config(&env, "[server]\nmax_captured_output = 100\n");
    env.server(&["start"]).expect_code(0);
    write_config(&env, "[server]\nmax_captured_output = 200\n");
    let in_force = || config_in_force(&env)["server"]["max_captured_output"] == 200;
    let deadline = std::time::Instant::now() + mcli_tests::WAIT;
    while !in_force() {
        assert!(
            std::time::Instant::now() < deadline,
            "the edited file is not in force; the log:\n{}",
            env.log("server")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_new_commands_dir_is_searched_after_a_reload() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    let extra = env.root.path().join("more-commands");
    std::fs::create_dir_all(&extra).unwrap();
    let script = extra.join("fresh");
    std::fs::write(&script, "#!/bin/sh\necho fresh from a new dir\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.client(&["-q", "fresh"]).expect_code(127);
    write_config(&env, &format!("[server]\ncommands_dirs = [{:?}]\n", extra.display().to_string()));
    env.server(&["reload"]).expect_code(0);
    let run = env.client(&["-q", "fresh"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "fresh from a new dir\n");
}

#[test]
fn config_show_says_where_each_value_comes_from() {
    let mut env = TestEnv::new();
    let file = write_config(&env, "[api_daemon]\ncommand_timeout = 42\n");
    env.set_env("MCLI_API_DAEMON_DEBUG", "true");
    let show = env.server(&["config", "show"]);
    show.expect_code(0);
    let line = |key: &str| show.stdout.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_owned();
    assert!(line("api_daemon.command_timeout = 42").ends_with(&format!("# {}:2", file.display())), "{}", show.stdout);
    assert!(line("api_daemon.debug = true").ends_with("# environment MCLI_API_DAEMON_DEBUG"), "{}", show.stdout);
    assert!(line("api_daemon.max_concurrent_commands = 10").ends_with("# default"), "{}", show.stdout);
    let check = env.server(&["config", "check"]);
    check.expect_code(0);
    assert!(check.stdout.contains(&format!("{} is valid", file.display())), "{}", check.stdout);
}

#[test]
fn reload_without_a_server_and_with_another_file_say_what_to_do() {
    let env = TestEnv::new();
    let none = env.server(&["reload"]);
    none.expect_code(1);
    assert!(none.stderr.contains("no server named `server` is running"), "{}", none.stderr);
    env.server(&["start"]).expect_code(0);
    let other = env.server(&["--config", "/tmp/other.toml", "reload"]);
    other.expect_code(2);
    assert!(other.stderr.contains("run `mcli-server restart --config /tmp/other.toml`"), "{}", other.stderr);
}

/// `GET /health` on `addr`: the status line, or the connection error.
fn health(addr: &str) -> Result<String, std::io::Error> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(mcli_tests::WAIT))?;
    write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply.lines().next().unwrap_or_default().to_owned())
}

fn http_in_status(env: &TestEnv) -> Option<String> {
    env.status_json()["http"].as_str().map(str::to_owned)
}

#[test]
fn a_reload_turns_the_http_bridge_on_moves_it_and_turns_it_off() {
    let env = TestEnv::new();
    env.server(&["start"]).expect_code(0);
    assert_eq!(http_in_status(&env), None);

    // On, at a port of its own choosing.
    write_config(&env, "[api_daemon]\nenabled = true\nhost = \"127.0.0.1\"\nuse_random_port = true\n");
    let reload = env.server(&["reload"]);
    reload.expect_code(0);
    wait_until("the bridge to listen", || http_in_status(&env).is_some());
    let first = http_in_status(&env).expect("an address");
    assert_eq!(health(&first).expect("the bridge answers"), "HTTP/1.1 200 OK");
    wait_until("the server file to name it", || env.server_file("server")["http"] == first.as_str());
    assert!(
        !reload.stdout.contains("api_daemon.enabled") || reload.stdout.contains("in force now"),
        "{}",
        reload.stdout
    );

    // Moved: a fixed port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write_config(&env, &format!("[api_daemon]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\n"));
    env.server(&["reload"]).expect_code(0);
    let moved = format!("127.0.0.1:{port}");
    wait_until("the bridge to move", || http_in_status(&env).as_deref() == Some(moved.as_str()));
    assert_eq!(health(&moved).expect("the bridge answers at its new address"), "HTTP/1.1 200 OK");
    assert!(health(&first).is_err(), "the old address is closed");

    // Off.
    write_config(&env, "[api_daemon]\nenabled = false\n");
    env.server(&["reload"]).expect_code(0);
    wait_until("the bridge to close", || http_in_status(&env).is_none());
    assert!(health(&moved).is_err(), "nothing listens any more");
    wait_until("the server file to say so", || env.server_file("server")["http"].is_null());
    // The server itself went on all along.
    env.client(&["-q", "hello"]).expect_code(0);
}

#[test]
fn a_bridge_asked_for_with_http_is_not_switched_by_the_config() {
    let env = TestEnv::new();
    env.server(&["start", "--http", "127.0.0.1:0"]).expect_code(0);
    let addr = http_in_status(&env).expect("the bridge");
    write_config(&env, "[api_daemon]\nenabled = false\nport = 1\n");
    let reload = env.server(&["reload"]);
    reload.expect_code(0);
    assert!(reload.stdout.contains("api_daemon.port"), "named as waiting for a restart: {}", reload.stdout);
    assert_eq!(http_in_status(&env).as_deref(), Some(addr.as_str()));
    assert_eq!(health(&addr).expect("still served"), "HTTP/1.1 200 OK");
}

#[test]
fn a_bridge_that_cannot_switch_stays_as_it_was_and_the_reload_says_why() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\nenabled = true\nhost = \"127.0.0.1\"\nuse_random_port = true\n");
    env.server(&["start"]).expect_code(0);
    let addr = http_in_status(&env).expect("the bridge");
    // A port that another process holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    write_config(&env, &format!("[api_daemon]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\n"));
    let reload = env.server(&["reload", "--json"]);
    reload.expect_code(0);
    let said: Value = serde_json::from_str(&reload.stdout).unwrap_or(Value::Null);
    let warnings = said["warnings"].to_string();
    // The file watcher may have reloaded first; then the log has the same words.
    let words = format!("the HTTP bridge cannot listen on 127.0.0.1:{port}");
    wait_until("the reason to be told", || warnings.contains(&words) || env.log("server").contains(&words));
    assert_eq!(health(&addr).expect("still served at the old address"), "HTTP/1.1 200 OK");
    assert_eq!(http_in_status(&env).as_deref(), Some(addr.as_str()));

    // No token beyond loopback is refused the same way.
    write_config(
        &env,
        "[api_daemon]\nenabled = true\nhost = \"0.0.0.0\"\nuse_random_port = true\nrequire_token = false\n",
    );
    let reload = env.server(&["reload", "--json"]);
    reload.expect_code(0);
    let words = "`api_daemon.require_token = false` is allowed only for a loopback address, not 0.0.0.0:0; the HTTP bridge is unchanged";
    wait_until("the refusal to be told", || reload.stdout.contains(words) || env.log("server").contains(words));
    assert_eq!(http_in_status(&env).as_deref(), Some(addr.as_str()));
    drop(taken);
}
