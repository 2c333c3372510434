//! Runs a resolved command and reports how it ended. Output goes out as [`Chunk`]s on a bounded
//! channel as it is produced, so a slow reader slows the command instead of growing a buffer.
//! The server forwards the chunks as `mcli/output` notifications; the client, running a command
//! itself, writes them to its own stdout and stderr. Both see the same semantics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::{ExecStatus, Stream};
use crate::registry::{Builtin, CommandKind, CommandSpec};

/// What to run: the arguments and surroundings of one execution.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub args: Vec<String>,
    /// The directory to run in; the current one when absent.
    pub cwd: Option<PathBuf>,
    /// The complete environment; the current one when absent.
    pub env: Option<BTreeMap<String, String>>,
    pub stdin: Option<Bytes>,
    /// How long it may run; no limit when absent.
    pub timeout: Option<Duration>,
}

/// A piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Bytes,
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
}

impl Outcome {
    fn exited(code: i32, started: Instant) -> Self {
        let status = if code == 0 {
            ExecStatus::Completed
        } else {
            ExecStatus::Failed
        };
        Outcome {
            status,
            exit_code: Some(code),
            signal: None,
            duration: started.elapsed(),
        }
    }

    fn ended(status: ExecStatus, started: Instant) -> Self {
        Outcome {
            status,
            exit_code: None,
            signal: None,
            duration: started.elapsed(),
        }
    }
}

/// Runs `spec` and waits for it to end, is cancelled, or times out.
pub async fn run(
    spec: &CommandSpec,
    inv: &Invocation,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
) -> Outcome {
    let started = Instant::now();
    let work = async {
        match &spec.kind {
            CommandKind::Builtin(builtin) => run_builtin(*builtin, inv, out).await,
        }
    };
    let deadline = async {
        match inv.timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        code = work => Outcome::exited(code, started),
        () = deadline => Outcome::ended(ExecStatus::TimedOut, started),
        () = cancel.cancelled() => Outcome::ended(ExecStatus::Cancelled, started),
    }
}

async fn emit(out: &mpsc::Sender<Chunk>, stream: Stream, text: impl Into<Bytes>) {
    // A closed channel means nobody reads the output any more; the caller cancels the run.
    let _ = out
        .send(Chunk {
            stream,
            data: text.into(),
        })
        .await;
}

/// Reports a usage error of a built-in, the way command-line tools do: message on stderr, exit 2.
async fn usage(out: &mpsc::Sender<Chunk>, name: &str, problem: &str, usage: &str) -> i32 {
    emit(
        out,
        Stream::Stderr,
        format!("{name}: {problem}\nusage: {usage}\n"),
    )
    .await;
    2
}

async fn run_builtin(builtin: Builtin, inv: &Invocation, out: &mpsc::Sender<Chunk>) -> i32 {
    let args = &inv.args;
    match builtin {
        Builtin::Hello => {
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
                        return usage(out, "hello", &format!("unknown option `{flag}`"), USAGE)
                            .await;
                    }
                    word if name.is_none() => name = Some(word),
                    word => {
                        return usage(
                            out,
                            "hello",
                            &format!("unexpected argument `{word}`"),
                            USAGE,
                        )
                        .await;
                    }
                }
            }
            let suffix = if verbose { " (verbose mode)" } else { "" };
            emit(
                out,
                Stream::Stdout,
                format!("Hello {}!{suffix}\n", name.unwrap_or("World")),
            )
            .await;
            0
        }
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
                [one] => one
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9),
                _ => None,
            };
            let Some(secs) = secs else {
                return usage(out, "sleep", "expected one number of seconds", USAGE).await;
            };
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            0
        }
        Builtin::Exit => {
            const USAGE: &str = "exit [CODE]";
            match args.as_slice() {
                [] => 0,
                [code] => match code.parse::<u8>() {
                    Ok(code) => i32::from(code),
                    Err(_) => {
                        usage(
                            out,
                            "exit",
                            &format!("`{code}` is not a status from 0 to 255"),
                            USAGE,
                        )
                        .await
                    }
                },
                _ => usage(out, "exit", "expected at most one status", USAGE).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    async fn run_named(
        name: &str,
        args: &[&str],
        timeout: Option<Duration>,
    ) -> (Outcome, String, String) {
        let spec = Registry::builtin().get(name).unwrap();
        let inv = Invocation {
            args: args.iter().map(|s| s.to_string()).collect(),
            timeout,
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::channel(16);
        let outcome = run(&spec, &inv, &tx, &CancellationToken::new()).await;
        drop(tx);
        let (mut stdout, mut stderr) = (String::new(), String::new());
        while let Some(chunk) = rx.recv().await {
            let text = String::from_utf8(chunk.data.to_vec()).unwrap();
            match chunk.stream {
                Stream::Stdout => stdout += &text,
                Stream::Stderr => stderr += &text,
            }
        }
        (outcome, stdout, stderr)
    }

    #[tokio::test]
    async fn hello_greets() {
        let (outcome, out, _) = run_named("hello", &["World", "--verbose"], None).await;
        assert_eq!(out, "Hello World! (verbose mode)\n");
        assert_eq!(
            (outcome.status, outcome.exit_code),
            (ExecStatus::Completed, Some(0))
        );
        assert_eq!(run_named("hello", &[], None).await.1, "Hello World!\n");
    }

    #[tokio::test]
    async fn usage_errors_exit_2_on_stderr() {
        let (outcome, out, err) = run_named("hello", &["--frob"], None).await;
        assert_eq!(
            (outcome.status, outcome.exit_code),
            (ExecStatus::Failed, Some(2))
        );
        assert_eq!(out, "");
        assert_eq!(
            err,
            "hello: unknown option `--frob`\nusage: hello [NAME] [--verbose]\n"
        );
    }

    #[tokio::test]
    async fn exit_status_and_timeout() {
        assert_eq!(run_named("exit", &["7"], None).await.0.exit_code, Some(7));
        let (outcome, _, _) = run_named("sleep", &["5"], Some(Duration::from_millis(20))).await;
        assert_eq!(
            (outcome.status, outcome.exit_code),
            (ExecStatus::TimedOut, None)
        );
    }
}
