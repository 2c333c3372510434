//! Running a command in the client's own process (`--alternate-editor=local`,
//! `MCLI_DAEMON_ROUTING=false`), with the same registry and runner as the server, so a command
//! behaves the same either way.

use std::io::{self, Write};
use std::time::Duration;

use mcli_protocol::Stream;
use mcli_shared::config;
use mcli_shared::execution::{Capture, Execution, OneShotWorkers, OutputSink};
use mcli_shared::paths;
use mcli_shared::registry::Registry;
use mcli_shared::runner::{Chunk, Invocation, Stdin};
use mcli_shared::streams::Passed;
use tokio_util::sync::CancellationToken;

use crate::args::Cli;
use crate::error::{ClientError, report_for};
use crate::exit::{self, exit_status};
use crate::stdin::stdin_is_forwarded;

pub fn run(name: &str, args: &[String], cli: &Cli) -> i32 {
    let config = match config::load(None, paths::process_env) {
        Ok(loaded) => loaded.config,
        Err(err) => return report_for(cli.json, &ClientError::Config(err)),
    };
    let registry = Registry::scan(&config.commands_dirs(paths::process_env));
    let spec = match registry.get(name) {
        Ok(spec) => spec,
        Err(err) => return report_for(cli.json, &ClientError::Lookup(err)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(source) => return report_for(cli.json, &ClientError::LocalRuntime { command: name.to_owned(), source }),
    };
    // A process gets this client's own streams (its terminal, its files and pipes) unless the
    // output is wanted for `--json`, or `--no-pass-streams` asks for it to be pumped.
    let own_streams = !crate::passing::streams_stay_with_mcli(cli);
    let invocation = Invocation {
        args: args.to_vec(),
        cwd: std::env::current_dir().ok(),
        env: None,
        stdin: if stdin_is_forwarded() { Stdin::Inherit } else { Stdin::Null },
        timeout: cli.timeout.map(Duration::from_secs_f64),
        passed: if own_streams { Passed::own().unwrap_or_default() } else { Passed::default() },
        // With the client's own streams the command is part of the client's job, as in a
        // direct run: it reads the terminal, and Ctrl-Z stops both, `fg` resumes both.
        in_callers_group: own_streams,
        ..Invocation::default()
    };
    let execution = Execution::new(spec, invocation, &config);
    let limit = execution.time_limit();
    let mut output = if cli.json { LocalOutput::Captured(Capture::new(usize::MAX)) } else { LocalOutput::Written };
    let cancel = CancellationToken::new();
    let outcome = runtime.block_on(async {
        // Ctrl-C cancels the command (its process group does not get the terminal's signal);
        // a second one leaves at once. The handler is in place before the command starts: here,
        // not in the task, which may first run after the command has started.
        let sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        let interrupts = tokio::spawn(cancel_on_interrupt(sigint, cancel.clone()));
        let outcome = execution.run(&OneShotWorkers, &mut output, &cancel).await;
        interrupts.abort();
        outcome
    });
    let mut result = outcome.to_result(0, name.to_owned(), false);
    if result.status == mcli_protocol::ExecStatus::TimedOut {
        result.time_limit = limit;
    }
    crate::exit::say_why_it_ended(&result, cli.quiet);
    match output {
        LocalOutput::Captured(capture) => {
            capture.attach_to(&mut result);
            match serde_json::to_string(&result) {
                Ok(text) => println!("{text}"),
                Err(err) => return report_for(cli.json, &ClientError::PrintResult(err)),
            }
        }
        LocalOutput::BrokenPipe => return exit::BROKEN_PIPE,
        LocalOutput::Written => {}
    }
    exit_status(&result)
}

/// SIGINT (through `sigint`) cancels the command; a second one exits at once.
async fn cancel_on_interrupt(sigint: Option<tokio::signal::unix::Signal>, cancel: CancellationToken) {
    let Some(mut sigint) = sigint else { return };
    if sigint.recv().await.is_some() {
        cancel.cancel();
    }
    if sigint.recv().await.is_some() {
        std::process::exit(exit::INTERRUPTED);
    }
}

/// Where a locally run command's output goes: this process's stdout and stderr as it comes, or
/// captured for `--json`.
enum LocalOutput {
    Written,
    Captured(Capture),
    /// Standard output was closed by its reader: the command is ended, like a pipe's writer.
    BrokenPipe,
}

impl OutputSink for LocalOutput {
    async fn accept(&mut self, chunk: Chunk) -> bool {
        let written = match self {
            LocalOutput::Captured(capture) => {
                capture.keep(&chunk);
                return true;
            }
            LocalOutput::BrokenPipe => return false,
            LocalOutput::Written => match chunk.stream {
                Stream::Stdout => {
                    let mut out = io::stdout().lock();
                    out.write_all(&chunk.data).and_then(|()| out.flush())
                }
                Stream::Stderr => io::stderr().lock().write_all(&chunk.data),
            },
        };
        if written.is_err() {
            *self = LocalOutput::BrokenPipe;
        }
        written.is_ok()
    }
}
