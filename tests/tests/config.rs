//! Configuration (file, environment, flags and their precedence) and the safety checks on the
//! runtime directory, through the real binaries.

#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;

use mcli_tests::TestEnv;
use serde_json::Value;

fn write_config(env: &TestEnv, text: &str) -> std::path::PathBuf {
    let dir = env.config_home.join("mcli");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn status(env: &TestEnv) -> Value {
    let run = env.server(&["status", "--json"]);
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn the_default_config_file_is_read_and_shown_in_status() {
    let env = TestEnv::new();
    let file = write_config(&env, "[api_daemon]\ncommand_timeout = 42\nmax_concurrent_commands = 3\n");
    env.server(&["start"]).expect_code(0);
    let config = &status(&env)["config"];
    assert_eq!(config["api_daemon"]["command_timeout"], 42.0);
    assert_eq!(config["api_daemon"]["max_concurrent_commands"], 3);
    assert_eq!(config["file"], file.display().to_string());
}

#[test]
fn command_timeout_from_the_config_ends_commands() {
    let env = TestEnv::new();
    write_config(&env, "[api_daemon]\ncommand_timeout = 0.3\n");
    env.client(&["-q", "sleep", "10"]).expect_code(124);
    // A request's own timeout wins over the config's.
    env.client(&["-q", "-t", "5", "sleep", "0.5"]).expect_code(0);
}

#[test]
fn precedence_is_flag_then_env_then_file() {
    let mut env = TestEnv::new();
    write_config(&env, "[api_daemon]\nport = 1000\ndebug = false\nhost = \"127.0.0.1\"\n");
    env.set_env("MCLI_API_DAEMON_PORT", "2000");
    env.set_env("MCLI_API_DAEMON_DEBUG", "false");
    env.server(&["start", "--debug"]).expect_code(0);
    let config = &status(&env)["config"]["api_daemon"];
    assert_eq!(config["port"], 2000, "env beats file");
    assert_eq!(config["debug"], true, "flag beats env");
    assert_eq!(config["host"], "127.0.0.1");
    env.server(&["stop"]).expect_code(0);

    env.set_env("MCLI_API_DAEMON_HOST", "::1");
    env.set_env("MCLI_API_DAEMON_ENABLED", "true");
    env.server(&["start"]).expect_code(0);
    let config = &status(&env)["config"]["api_daemon"];
    assert_eq!((config["host"].as_str(), config["enabled"].as_bool()), (Some("::1"), Some(true)));
    assert_eq!(config["debug"], false);
}

#[test]
fn an_explicit_config_file_wins_over_mcli_config() {
    let mut env = TestEnv::new();
    let a = env.root.path().join("a.toml");
    let b = env.root.path().join("b.toml");
    std::fs::write(&a, "[api_daemon]\nmax_concurrent_commands = 4\n").unwrap();
    std::fs::write(&b, "[api_daemon]\nmax_concurrent_commands = 5\n").unwrap();
    env.set_env("MCLI_CONFIG", &a);
    env.server(&["start"]).expect_code(0);
    assert_eq!(status(&env)["config"]["api_daemon"]["max_concurrent_commands"], 4);
    env.server(&["stop"]).expect_code(0);
    env.server(&["--config", b.to_str().unwrap(), "start"]).expect_code(0);
    assert_eq!(status(&env)["config"]["api_daemon"]["max_concurrent_commands"], 5);

    let missing = env.server(&["--config", "/nonexistent/mcli.toml", "start"]);
    missing.expect_code(1);
    assert!(missing.stderr.contains("cannot read config file /nonexistent/mcli.toml"), "{}", missing.stderr);
}

#[test]
fn unknown_keys_are_warnings_naming_file_and_key() {
    let env = TestEnv::new();
    let file = write_config(&env, "[api_daemon]\nmax_concurent_commands = 3\n[colours]\nx = 1\n");
    let run = env.server(&["start"]);
    run.expect_code(0);
    let shown = file.display();
    assert!(
        run.stderr.contains(&format!(
            "warning: config file {shown}: unknown key `api_daemon.max_concurent_commands` ignored"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("unknown key `colours` ignored"), "{}", run.stderr);
}

#[test]
fn invalid_values_are_errors_naming_file_line_and_key() {
    let env = TestEnv::new();
    let file = write_config(&env, "# mcli\n[api_daemon]\nenabled = true\nport = 99999\n");
    let run = env.server(&["start"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        format!(
            "mcli-server: config file {}, line 4: `api_daemon.port` must be a whole number from 1 to 65535, not 99999\n",
            file.display()
        )
    );
    assert!(env.server_pids().is_empty());

    write_config(&env, "[api_daemon\n");
    let run = env.server(&["start", "--foreground"]);
    run.expect_code(1);
    assert!(run.stderr.contains("is not valid TOML") && run.stderr.contains("line 1"), "{}", run.stderr);
}

#[test]
fn invalid_environment_values_are_errors() {
    let mut env = TestEnv::new();
    env.set_env("MCLI_API_DAEMON_PORT", "eighty");
    let run = env.server(&["start"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        "mcli-server: environment variable MCLI_API_DAEMON_PORT=\"eighty\": must be a whole number from 1 to 65535\n"
    );
}

#[test]
fn a_group_readable_runtime_dir_is_refused_by_both() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.runtime_dir).unwrap();
    std::fs::set_permissions(&env.runtime_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = env.runtime_dir.display();
    let client = env.client(&["hello"]);
    client.expect_code(69);
    assert_eq!(
        client.stderr,
        format!("mcli-client: runtime dir {dir} is open to group or others (mode 0755); run `chmod 700 {dir}`\n")
    );
    let server = env.server(&["start"]);
    server.expect_code(1);
    assert!(server.stderr.contains("is open to group or others (mode 0755)"), "{}", server.stderr);
    assert!(env.server_pids().is_empty());
}

#[test]
fn a_symlinked_runtime_dir_is_refused_by_both() {
    let env = TestEnv::new();
    let real = env.root.path().join("elsewhere");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&real, &env.runtime_dir).unwrap();
    let client = env.client(&["hello"]);
    client.expect_code(69);
    assert!(client.stderr.contains("is a symbolic link"), "{}", client.stderr);
    let server = env.server(&["start", "--foreground"]);
    server.expect_code(1);
    assert!(server.stderr.contains("is a symbolic link"), "{}", server.stderr);
}

#[test]
fn a_runtime_dir_of_another_user_is_refused_by_both() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.runtime_dir).unwrap();
    std::fs::set_permissions(&env.runtime_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let me = nix::unistd::geteuid();
    if !me.is_root() {
        // Only root can give a directory away; the unit tests cover the check itself.
        eprintln!("skipped: needs root to chown");
        return;
    }
    let other = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(&env.runtime_dir, Some(other), None).unwrap();
    let client = env.client(&["hello"]);
    client.expect_code(69);
    assert!(client.stderr.contains("belongs to uid 65534, not to you (uid 0)"), "{}", client.stderr);
    let server = env.server(&["status"]);
    server.expect_code(1);
    assert!(server.stderr.contains("belongs to uid 65534"), "{}", server.stderr);
}
