//! Running a command in the client's own process (`--alternate-editor=local`,
//! `MCLI_DAEMON_ROUTING=false`), with the same registry and runner as the server, so a command
//! behaves the same either way.

use std::io::{self, Write};
use std::time::Duration;

use bytes::Bytes;
use mcli_shared::protocol::{ExecuteResult, Stream};
use mcli_shared::registry::Registry;
use mcli_shared::runner::{self, Chunk, Invocation};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, exit, exit_status};

pub fn run(name: &str, args: &[String], cli: &Cli) -> i32 {
    let spec = match Registry::builtin().get(name) {
        Ok(spec) => spec,
        Err(not_found) => {
            eprintln!("mcli-client: {not_found}");
            return exit::NOT_FOUND;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mcli-client: cannot run `{name}` locally: {err}");
            return 1;
        }
    };
    let invocation = Invocation {
        args: args.to_vec(),
        cwd: std::env::current_dir().ok(),
        env: None,
        stdin: None::<Bytes>,
        timeout: cli.timeout.map(Duration::from_secs_f64),
    };
    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let cancel = CancellationToken::new();
    let mut captured = (Vec::new(), Vec::new());
    let json = cli.json;
    let outcome = runtime.block_on(async {
        let run = async move { runner::run(&spec, &invocation, &tx, &cancel).await };
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
                    break;
                }
            }
        };
        tokio::join!(run, print).0
    });
    let result = ExecuteResult {
        id: 0,
        command: name.to_owned(),
        status: outcome.status,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        duration_ms: outcome.duration.as_millis() as u64,
        cached: false,
        stdout: json.then(|| String::from_utf8_lossy(&captured.0).into_owned()),
        stderr: json.then(|| String::from_utf8_lossy(&captured.1).into_owned()),
        truncated: json.then_some(false),
    };
    if json {
        match serde_json::to_string(&result) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("mcli-client: cannot print the result: {err}"),
        }
    }
    exit_status(&result)
}
