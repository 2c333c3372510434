//! Running a command in the client's own process (`--alternate-editor=local`,
//! `MCLI_DAEMON_ROUTING=false`), with the same registry and runner as the server, so a command
//! behaves the same either way.

use std::io::{self, Write};
use std::time::Duration;

use mcli_protocol::Stream;
use mcli_shared::config;
use mcli_shared::paths;
use mcli_shared::registry::Registry;
use mcli_shared::runner::{self, Chunk, Invocation, Stdin};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::args::Cli;
use crate::error::{ClientError, report};
use crate::exit::{self, exit_status};
use crate::stdin::stdin_is_forwarded;

pub fn run(name: &str, args: &[String], cli: &Cli) -> i32 {
    let config = match config::load(None, paths::process_env) {
        Ok(loaded) => loaded.config,
        Err(err) => return report(&ClientError::Config(err)),
    };
    let registry = Registry::scan(&config.commands_dirs(paths::process_env));
    let spec = match registry.get(name) {
        Ok(spec) => spec,
        Err(err) => return report(&ClientError::Lookup(err)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(source) => return report(&ClientError::LocalRuntime { command: name.to_owned(), source }),
    };
    let invocation = Invocation {
        args: args.to_vec(),
        cwd: std::env::current_dir().ok(),
        env: None,
        stdin: if stdin_is_forwarded() { Stdin::Inherit } else { Stdin::Null },
        timeout: runner::effective_timeout(
            cli.timeout.map(Duration::from_secs_f64),
            &spec,
            config.api_daemon.command_timeout,
        ),
        kill_grace: config.server.kill_grace.duration(),
    };
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let cancel = CancellationToken::new();
    let mut captured = (Vec::new(), Vec::new());
    let json = cli.json;
    let mut broken_pipe = false;
    let stop = cancel.clone();
    let outcome = runtime.block_on(async {
        // Ctrl-C cancels the command (its process group does not get the terminal's signal);
        // a second one leaves at once.
        // The handler is in place before the command starts: a Ctrl-C from then on cancels it.
        let sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        let interrupts = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let Ok(mut sigint) = sigint else { return };
                if sigint.recv().await.is_some() {
                    cancel.cancel();
                }
                if sigint.recv().await.is_some() {
                    std::process::exit(exit::INTERRUPTED);
                }
            })
        };
        let run = async move { runner::run(&spec, invocation, &tx, &cancel).await };
        let print = async {
            while let Some(chunk) = rx.recv().await {
                if json {
                    match chunk.stream {
                        Stream::Stdout => captured.0.extend_from_slice(&chunk.data),
                        Stream::Stderr => captured.1.extend_from_slice(&chunk.data),
                    }
                    continue;
                }
                let written = match chunk.stream {
                    Stream::Stdout => {
                        let mut out = io::stdout().lock();
                        out.write_all(&chunk.data).and_then(|()| out.flush())
                    }
                    Stream::Stderr => io::stderr().lock().write_all(&chunk.data),
                };
                if written.is_err() {
                    // Like a pipe's reader going away: end the command, drain, exit 141.
                    broken_pipe = true;
                    stop.cancel();
                }
            }
        };
        let outcome = tokio::join!(run, print).0;
        interrupts.abort();
        outcome
    });
    let mut result = outcome.to_result(0, name.to_owned(), false);
    if json {
        runner::attach_output(&mut result, &captured.0, &captured.1, false);
        match serde_json::to_string(&result) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("mcli-client: cannot print the result: {err}"),
        }
    }
    if broken_pipe {
        return exit::BROKEN_PIPE;
    }
    exit_status(&result)
}
