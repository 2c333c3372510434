//! The commands built into mcli (`hello`, `echo`, `pwd`, `sleep`, `exit`). They run in-process,
//! in the server or in the client itself, under the same timeout and cancel as any command.

use std::time::Instant;

use mcli_protocol::{ExecStatus, Seconds, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::registry::Builtin;
use crate::runner::{Chunk, Invocation, Outcome, deadline, emit};

/// Runs `builtin` until it ends, times out or is cancelled.
pub async fn run(
    builtin: Builtin,
    inv: &Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Outcome {
    tokio::select! {
        code = run_builtin(builtin, inv, out) => Outcome::exited(code, started),
        () = deadline(inv.timeout) => Outcome::ended(ExecStatus::TimedOut, started),
        () = cancel.cancelled() => Outcome::ended(ExecStatus::Cancelled, started),
    }
}

/// Reports a usage error of a built-in, the way command-line tools do: message on stderr, exit 2.
async fn usage(out: &mpsc::Sender<Chunk>, name: &str, problem: &str, usage: &str) -> i32 {
    emit(out, Stream::Stderr, format!("{name}: {problem}\nusage: {usage}\n")).await;
    2
}

/// `hello [NAME] [--verbose]`: the greeting of the original MCLI.
async fn hello(args: &[String], out: &mpsc::Sender<Chunk>) -> i32 {
    const USAGE: &str = "hello [NAME] [--verbose]";
    let mut name = None;
    let mut verbose = false;
    for arg in args {
        match arg.as_str() {
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => {
                emit(out, Stream::Stdout, format!("usage: {USAGE}\n")).await;
                return 0;
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return usage(out, "hello", &format!("unknown option `{flag}`"), USAGE).await;
            }
            word if name.is_none() => name = Some(word),
            word => {
                return usage(out, "hello", &format!("unexpected argument `{word}`"), USAGE).await;
            }
        }
    }
    let suffix = if verbose { " (verbose mode)" } else { "" };
    emit(out, Stream::Stdout, format!("Hello {}!{suffix}\n", name.unwrap_or("World"))).await;
    0
}

async fn run_builtin(builtin: Builtin, inv: &Invocation, out: &mpsc::Sender<Chunk>) -> i32 {
    let args = &inv.args;
    match builtin {
        Builtin::Hello => hello(args, out).await,
        Builtin::Echo => {
            emit(out, Stream::Stdout, format!("{}\n", args.join(" "))).await;
            0
        }
        Builtin::Pwd => {
            let dir = match &inv.cwd {
                Some(dir) => dir.clone(),
                None => std::env::current_dir().unwrap_or_default(),
            };
            emit(out, Stream::Stdout, format!("{}\n", dir.display())).await;
            0
        }
        Builtin::Sleep => {
            const USAGE: &str = "sleep SECONDS";
            let secs = match args.as_slice() {
                [one] => one.parse::<f64>().ok().and_then(|s| Seconds::new(s).ok()),
                _ => None,
            };
            let Some(secs) = secs else {
                return usage(out, "sleep", "expected one number of seconds", USAGE).await;
            };
            tokio::time::sleep(secs.duration()).await;
            0
        }
        Builtin::Exit => {
            const USAGE: &str = "exit [CODE]";
            match args.as_slice() {
                [] => 0,
                [code] => match code.parse::<u8>() {
                    Ok(code) => i32::from(code),
                    Err(_) => usage(out, "exit", &format!("`{code}` is not a status from 0 to 255"), USAGE).await,
                },
                _ => usage(out, "exit", "expected at most one status", USAGE).await,
            }
        }
    }
}
