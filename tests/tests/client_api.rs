//! The Rust client library, through its examples: `client/examples/hello.rs` (a `Client`) and
//! `client/examples/routed.rs` (a clap application that routes a subcommand to the daemon).
//! `cargo test` builds the examples before it runs the tests.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use mcli_tests::{Run, TestEnv, bin_dir};

fn example(name: &str) -> PathBuf {
    let path = bin_dir().join("examples").join(name);
    assert!(path.is_file(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

#[test]
fn a_client_starts_a_server_runs_a_command_and_reads_the_status() {
    let mut env = TestEnv::new();
    // The library starts the `mcli-server` found on PATH.
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    env.set_env("PATH", path);
    let run = Run::of(env.command(example("hello")).arg("Ada"));
    run.expect_code(0);
    assert_eq!(run.stdout, "Hello Ada!\n");
    assert!(run.stderr.contains("commands run"), "{}", run.stderr);
    assert_eq!(env.server_pids().len(), 1, "it started the server");
    let history = env.server(&["history", "--json"]);
    assert!(history.stdout.contains("\"hello\""), "{}", history.stdout);
}

#[test]
fn route_runs_through_the_daemon_when_routing_is_on_and_locally_otherwise() {
    let mut env = TestEnv::new();
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    env.set_env("PATH", path);
    env.set_env("MCLI_DAEMON_ROUTING", "false");
    let local = Run::of(env.command(example("routed")).args(["greet", "Ada"]));
    local.expect_code(0);
    assert_eq!(local.stdout, "Hello Ada! (run locally)\n");
    assert!(env.server_pids().is_empty(), "no daemon when routing is off");

    env.set_env("MCLI_DAEMON_ROUTING", "true");
    let routed = Run::of(env.command(example("routed")).args(["greet", "Ada", "--verbose"]));
    routed.expect_code(0);
    assert_eq!(routed.stdout, "Hello Ada! (verbose mode)\n", "the daemon's command answered");
    assert_eq!(env.server_pids().len(), 1);
}
