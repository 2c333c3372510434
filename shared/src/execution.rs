//! One execution pipeline for every way a command runs: through the server (any transport, the
//! HTTP bridge included) and in the client itself (`--alternate-editor=local`).
//!
//! An [`Execution`] is a resolved command with its invocation, whose final time limit and kill
//! grace come from the config here and nowhere else. [`Execution::run`] is the one place that
//! decides how a command runs (a built-in in-process, a process, or a call to a worker from the
//! caller's [`WorkerSource`]) and the one place that moves output from the command to the
//! caller's [`OutputSink`], ending the command when the sink has nobody to deliver to.

use std::sync::Arc;
use std::time::Instant;

use mcli_protocol::{ExecuteResult, Stream, TimeLimit};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::builtins;
use crate::config::Config;
use crate::manifest::Manifest;
use crate::registry::{CommandKind, CommandSpec};
use crate::runner::{self, Chunk, Invocation, Outcome, Program, attach_output, emit};
use crate::worker::{self, Call, Worker};

/// Chunks of output in flight between a command and its sink; the command waits beyond it.
const OUTPUT_QUEUE: usize = 16;
/// How long output may still take to be delivered once a call was cancelled or timed out,
/// besides the command's kill grace.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a command's output goes.
pub trait OutputSink: Send {
    /// Takes one chunk; false when it can no longer be delivered (the reader is gone), which
    /// ends the command rather than run it blind.
    fn accept(&mut self, chunk: Chunk) -> impl Future<Output = bool> + Send;
}

/// Where worker commands find a worker: a pool of warm ones (the server), or a fresh one for
/// the call (the client's local mode, [`OneShotWorkers`]).
pub trait WorkerSource: Sync {
    /// Serves one call of the worker command `name` of `manifest`.
    fn call(
        &self,
        manifest: &Manifest,
        name: &str,
        inv: Invocation,
        out: &mpsc::Sender<Chunk>,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Outcome> + Send;
}

/// A resolved command ready to run.
#[derive(Debug)]
pub struct Execution {
    spec: Arc<CommandSpec>,
    inv: Invocation,
    /// What set the time limit, for a result that timed out.
    limit_set_by: Option<String>,
}

impl Execution {
    /// `inv.timeout` is the call's own limit, if it set one; the execution's limit is that, else
    /// the manifest's `timeout`, else `command_timeout` (0: none). The kill grace is the config's.
    pub fn new(spec: Arc<CommandSpec>, mut inv: Invocation, config: &Config) -> Execution {
        let limit = runner::time_limit(inv.timeout, &spec, config);
        inv.timeout = limit.as_ref().map(|(limit, _)| *limit);
        inv.kill_grace = config.server.kill_grace.duration();
        Execution { spec, inv, limit_set_by: limit.map(|(_, set_by)| set_by) }
    }

    /// The time limit and what set it, for the result of a call that timed out.
    pub fn time_limit(&self) -> Option<TimeLimit> {
        let (limit, set_by) = (self.inv.timeout?, self.limit_set_by.clone()?);
        Some(TimeLimit { secs: limit.as_secs_f64(), set_by })
    }

    pub fn spec(&self) -> &CommandSpec {
        &self.spec
    }

    /// Runs the command to its end, its timeout or `cancel`, with its output going to `sink`.
    pub async fn run(
        self,
        workers: &impl WorkerSource,
        sink: &mut impl OutputSink,
        cancel: &CancellationToken,
    ) -> Outcome {
        let Execution { spec, inv, .. } = self;
        // What the command still says as it is ended, within its kill grace, is delivered.
        let (limit, grace) = (inv.timeout, inv.kill_grace + OUTPUT_GRACE);
        let (tx, mut rx) = mpsc::channel::<Chunk>(OUTPUT_QUEUE);
        let run = async move {
            let started = Instant::now();
            match &spec.kind {
                CommandKind::Builtin(builtin) => builtins::run(*builtin, &inv, &tx, cancel, started).await,
                CommandKind::Script(path) => {
                    runner::run_process(Program::script(path.clone()), inv, &tx, cancel, started).await
                }
                CommandKind::Manifest(manifest) if manifest.worker.is_some() => {
                    workers.call(manifest, &spec.name, inv, &tx, cancel).await
                }
                CommandKind::Manifest(manifest) => {
                    let path_var = match &inv.env {
                        Some(env) => env.get("PATH").cloned(),
                        None => std::env::var("PATH").ok(),
                    };
                    match Program::of_manifest(manifest, path_var.as_deref()) {
                        Ok(program) => runner::run_process(program, inv, &tx, cancel, started).await,
                        Err(not_found) => {
                            emit(&tx, Stream::Stderr, format!("{}: {not_found}\n", crate::program_name())).await;
                            Outcome::exited(127, started)
                        }
                    }
                }
            }
        };
        let delivered = forward(&mut rx, sink, cancel, limit, grace);
        tokio::join!(run, delivered).0
    }
}

/// Hands the command's output to `sink` as it comes. Once the call is cancelled or past its
/// time limit the command is being ended, and what the sink has not taken `grace` later (a
/// client's pipe that nobody reads) is dropped: nothing may keep the call from ending. A sink
/// that refuses output cancels the call.
async fn forward(
    rx: &mut mpsc::Receiver<Chunk>,
    sink: &mut impl OutputSink,
    cancel: &CancellationToken,
    limit: Option<std::time::Duration>,
    grace: std::time::Duration,
) {
    use tokio::time::{Instant, sleep_until, timeout_at};
    // Computed now: the limit runs from the start, not from the first output.
    let deadline = limit.map(|limit| Instant::now() + limit);
    let limit_passed = async {
        match deadline {
            Some(at) => sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let over = async {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = limit_passed => {}
        }
    };
    tokio::pin!(over);
    // Once over: when the output still undelivered is given up.
    let mut give_up_at: Option<Instant> = None;
    let mut given_up = false;
    while let Some(chunk) = rx.recv().await {
        if given_up {
            continue;
        }
        let accept = sink.accept(chunk);
        tokio::pin!(accept);
        let accepted = loop {
            if let Some(at) = give_up_at {
                break timeout_at(at, &mut accept).await.ok();
            }
            tokio::select! {
                accepted = &mut accept => break Some(accepted),
                () = &mut over => give_up_at = Some(Instant::now() + grace),
            }
        };
        match accepted {
            Some(true) => {}
            Some(false) => cancel.cancel(),
            None => given_up = true,
        }
    }
}

/// Output kept for a result (`--json`, a call that does not stream), up to a limit for each of
/// stdout and stderr; what is over it is dropped and the result says `truncated`.
#[derive(Debug, Default)]
pub struct Capture {
    limit: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl Capture {
    pub fn new(limit: usize) -> Capture {
        Capture { limit, ..Capture::default() }
    }

    /// Keeps what fits of `chunk`.
    pub fn keep(&mut self, chunk: &Chunk) {
        let buf = match chunk.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let room = self.limit.saturating_sub(buf.len());
        if chunk.data.len() > room {
            self.truncated = true;
        }
        buf.extend_from_slice(&chunk.data[..chunk.data.len().min(room)]);
    }

    /// Puts the captured output in `result`.
    pub fn attach_to(&self, result: &mut ExecuteResult) {
        attach_output(result, &self.stdout, &self.stderr, self.truncated);
    }
}

impl OutputSink for Capture {
    async fn accept(&mut self, chunk: Chunk) -> bool {
        self.keep(&chunk);
        true
    }
}

/// Worker commands run by themselves: a worker started for the call and ended after it.
pub struct OneShotWorkers;

impl WorkerSource for OneShotWorkers {
    async fn call(
        &self,
        manifest: &Manifest,
        name: &str,
        mut inv: Invocation,
        out: &mpsc::Sender<Chunk>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let started = Instant::now();
        let stdin = match worker::call_input(&mut inv, out, cancel, started).await {
            Ok(stdin) => stdin,
            Err(outcome) => return outcome,
        };
        let mut worker = match Worker::for_manifest(manifest, |line| eprintln!("{line}")) {
            Ok(worker) => worker,
            Err(err) => return worker::start_failed(out, &err, started).await,
        };
        let outcome = worker.call(&Call::of(name, inv, stdin), out, cancel).await;
        worker.kill();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mcli_protocol::ExecStatus;

    use super::*;
    use crate::registry::Registry;

    async fn run_named(name: &str, args: &[&str], timeout: Option<Duration>) -> (Outcome, String, String) {
        let spec = Registry::builtin().get(name).unwrap();
        let inv = Invocation { args: args.iter().map(|s| s.to_string()).collect(), timeout, ..Default::default() };
        let mut capture = Capture::new(1024);
        let execution = Execution::new(spec, inv, &Config::default());
        let outcome = execution.run(&OneShotWorkers, &mut capture, &CancellationToken::new()).await;
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        (outcome, text(&capture.stdout), text(&capture.stderr))
    }

    #[tokio::test]
    async fn hello_greets() {
        let (outcome, out, _) = run_named("hello", &["World", "--verbose"], None).await;
        assert_eq!(out, "Hello World! (verbose mode)\n");
        assert_eq!((outcome.status, outcome.exit_code), (ExecStatus::Completed, Some(0)));
        assert_eq!(run_named("hello", &[], None).await.1, "Hello World!\n");
    }

    #[tokio::test]
    async fn usage_errors_exit_2_on_stderr() {
        let (outcome, out, err) = run_named("hello", &["--frob"], None).await;
        assert_eq!((outcome.status, outcome.exit_code), (ExecStatus::Failed, Some(2)));
        assert_eq!(out, "");
        assert_eq!(err, "hello: unknown option `--frob`\nusage: hello [NAME] [--verbose]\n");
    }

    #[tokio::test]
    async fn exit_status_and_timeout() {
        assert_eq!(run_named("exit", &["7"], None).await.0.exit_code, Some(7));
        let (outcome, _, _) = run_named("sleep", &["5"], Some(Duration::from_millis(20))).await;
        assert_eq!((outcome.status, outcome.exit_code), (ExecStatus::TimedOut, None));
    }

    #[test]
    fn capture_truncates_each_stream_at_its_limit() {
        let mut capture = Capture::new(4);
        capture.keep(&Chunk { stream: Stream::Stdout, data: "abcdef".into() });
        capture.keep(&Chunk { stream: Stream::Stderr, data: "xy".into() });
        assert_eq!(
            (capture.stdout.as_slice(), capture.stderr.as_slice(), capture.truncated),
            (&b"abcd"[..], &b"xy"[..], true)
        );
    }
}
