//! [`route`]: run a subcommand of a Rust program through the mcli daemon when routing is on,
//! else in the program itself: the Rust twin of the original daemon's `@daemon_command`.

use std::io::Write;

use mcli_protocol::Stream;
use mcli_shared::config;
use mcli_shared::paths;

use crate::client::{Client, Command, Error, default_name};

/// Whether calls are routed to the daemon: `MCLI_DAEMON_ROUTING` when it is set (`1`, `true`,
/// `yes`, `on` or their opposites), else `[api_daemon] enabled` in the config file.
pub fn routing_enabled() -> bool {
    if let Some(value) = std::env::var_os("MCLI_DAEMON_ROUTING") {
        let value = value.to_string_lossy().to_ascii_lowercase();
        return matches!(value.as_str(), "1" | "true" | "yes" | "on");
    }
    config::load(None, paths::process_env).is_ok_and(|loaded| loaded.config.api_daemon.enabled)
}

/// Runs `command` with `args` through the daemon when [`routing_enabled`], writing its output to
/// this process's stdout and stderr as it comes, and returns its exit status (as `mcli-client`
/// would exit). When routing is off, or no server can be reached or started, `local` runs
/// instead and its status is returned; so does it when the daemon has no such command.
pub fn route(command: &str, args: &[String], local: impl FnOnce() -> i32) -> i32 {
    if !routing_enabled() {
        return local();
    }
    let mut client = match Client::connect_or_start(&default_name()) {
        Ok(client) => client,
        Err(_) => return local(),
    };
    let mut call = Command::new(command);
    call.args(args.iter().cloned());
    let routed = client.execute_streaming(&call, |stream, data| {
        // Like a direct run, output whose reader went away is dropped; the status still counts.
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(data).and_then(|()| std::io::stdout().flush()),
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
    });
    match routed {
        Ok(output) => output.exit_status(),
        Err(Error::CommandNotFound { .. } | Error::NoServer { .. } | Error::Start(_) | Error::Connect(_)) => local(),
        Err(err) => {
            eprintln!("{command}: {err}");
            1
        }
    }
}
