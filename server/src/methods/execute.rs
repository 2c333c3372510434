//! `execute`: run a named command, streaming its output as `mcli/output` notifications ahead of
//! the result, or capturing it (up to a limit) into the result when not streaming.
//!
//! On the way: the protocol and shutdown checks, the checks of `cwd` and `env` (whatever kind of
//! command it is, so a built-in is refused where a program could not start), the lookup, the
//! result cache for manifests with a `[cache]` table, and a slot among `max_concurrent_commands`
//! (waiting in a bounded queue).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
use mcli_protocol::{
    ExecStatus, ExecuteParams, ExecuteResult, OUTPUT_NOTIFICATION, OutputParams, PROTOCOL_VERSION, QUEUED_NOTIFICATION,
    Seconds, code, encode_output,
};
use mcli_shared::execution::{Capture, Execution, OutputSink};
use mcli_shared::registry::{CommandKind, CommandSpec, LookupError};
use mcli_shared::runner::{Chunk, Invocation, Outcome, Stdin};
use mcli_shared::streams::{Group, Passed};
use serde::Serialize;

use super::{error, streams};
use crate::cache::{Entry, MAX_ENTRY_BYTES};
use crate::executions::{Refusal, Slot};
use crate::history::Record;
use crate::ids::IdsError;
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn execute(
    mut params: ExecuteParams,
    state: State,
    request: RequestCtx,
) -> Result<ExecuteResult, ErrorObjectOwned> {
    // Whatever happens, later stdin for this request is dropped rather than queued.
    let _release = ReleaseStdin(&request);
    if let Some(client) = params.protocol.filter(|p| *p != PROTOCOL_VERSION) {
        return Err(super::incompatible(u64::from(client)));
    }
    if state.lifecycle.is_shutting_down() {
        return Err(shutting_down());
    }
    let timeout = requested_timeout(params.timeout)?;
    check_env(params.env.as_ref())?;
    check_cwd(params.cwd.as_deref()).await?;
    let (registry, generation) = state.commands.current().await;
    let spec = registry.get(&params.command).map_err(lookup_error)?;
    let stream = params.stream.unwrap_or(request.stream_by_default);
    let Prepared { stdin, cache, process, tty, out } = prepare(&state, &params, &request, &spec, generation)?;
    // A detached job always runs: its output is for the job's files, not from the cache.
    let cache = cache.filter(|_| !params.detach);

    if let Some(hit) = cache.as_ref().and_then(|(key, _)| state.cache.get(key)) {
        return replay(&state, &request, &params, &spec, hit, stream, out).await;
    }
    if params.detach && (params.stdin_stream || params.streams.is_some() || params.tty.is_some()) {
        // Checked once the passed descriptors are claimed (and so dropped), not left queued.
        return Err(error(
            code::INVALID_PARAMS,
            "invalid params: a detached job takes no `stdin_stream`, `streams` or `tty`: its output goes to its files",
        ));
    }
    let Some(slot) = take_slot(&state, &request, stream).await? else {
        return never_ran(&state, &request, &params, &spec, stream).await;
    };
    let (slot_for_job, _slot) = if params.detach { (Some(slot), None) } else { (None, Some(slot)) };
    let invocation = Invocation {
        args: params.args.clone(),
        cwd: params.cwd.as_ref().map(PathBuf::from),
        env: params.env.take(),
        stdin,
        timeout,
        passed: process,
        tty,
        group: signal_route(&request, &spec),
        ..Invocation::default()
    };
    let execution = Execution::new(spec, invocation, &state.config());
    if let Some(slot) = slot_for_job {
        return crate::jobs::detach(&state, slot, execution, &params, request.transport).await;
    }
    run_attached(&state, &request, &params, execution, stream, cache, out).await
}

/// Runs `execution` for the caller, who waits for its result: streamed or captured output,
/// the result cached when it may be, then recorded in the history.
async fn run_attached(
    state: &State,
    request: &RequestCtx,
    params: &ExecuteParams,
    execution: Execution,
    stream: bool,
    cache: Option<(String, Duration)>,
    out: streams::PassedOut,
) -> Result<ExecuteResult, ErrorObjectOwned> {
    let (time_limit, limit) = (execution.time_limit(), state.config().server.max_captured_output);
    let running = state.executions.begin(&execution.spec().name, request.cancel.clone()).await.map_err(no_id)?;
    let (id, started_at) = (running.id, SystemTime::now());
    tracing::debug!(execution = id, command = %execution.spec().name, "started");
    let mut sink = ResultSink::new(request, id, stream, limit, cache.is_some());
    sink.passed = out;
    let outcome = execution.run(&state.workers, &mut sink, &request.cancel).await;
    running.finish(outcome.status);
    tracing::debug!(execution = id, status = outcome.status.as_str(), "ended");

    if let (Some((key, ttl)), Some(kept)) = (cache, sink.kept.take())
        && outcome.status == ExecStatus::Completed
        && outcome.exit_code == Some(0)
    {
        state.cache.put(key, ttl, outcome.exit_code, kept);
    }
    let mut result = sink.result(id, params.command.clone(), outcome, false);
    if result.status == ExecStatus::TimedOut {
        result.time_limit = time_limit;
    }
    Ok(recorded(state, request, params, started_at, result).await)
}

/// The process group that `signal` reaches for this request. A built-in or a worker call has
/// no process of its own: its group is over from the start, so `signal` says `delivered: false`.
fn signal_route(request: &RequestCtx, spec: &CommandSpec) -> Option<Group> {
    let group = Group::default();
    if !streams::is_process(spec) {
        group.clear();
    }
    request.terminal.route(&request.key, group.clone()).then_some(group)
}

/// The command's streams (the client's passed ones, a terminal, or pipes) and the cache plan.
struct Prepared {
    stdin: Stdin,
    cache: Option<(String, Duration)>,
    /// Descriptors the process uses as its own stdio.
    process: Passed,
    /// The master side of the command's terminal, for `tty`.
    tty: Option<OwnedFd>,
    /// Passed stdout and stderr the server writes to itself.
    out: streams::PassedOut,
}

fn prepare(
    state: &State,
    params: &ExecuteParams,
    request: &RequestCtx,
    spec: &CommandSpec,
    generation: u64,
) -> Result<Prepared, ErrorObjectOwned> {
    let passed = streams::claim(params, request)?;
    let mut stdin = stdin_source(params, request)?;
    let cache = cache_plan(state, spec, params, &stdin, generation)
        .filter(|_| !streams::stdin_is_input(passed.as_ref()) && params.tty.is_none());
    let plan = streams::plan(passed, spec, cache.is_some());
    if let Some(from_passed) = plan.stdin {
        stdin = from_passed;
    }
    let (process, tty) = match streams::tty(params, spec, request)? {
        Some((slave, master)) => (slave, Some(master)),
        None => (plan.process, None),
    };
    Ok(Prepared { stdin, cache, process, tty, out: plan.out })
}

/// Answers a call from the cache: the kept output, replayed as the command wrote it.
async fn replay(
    state: &State,
    request: &RequestCtx,
    params: &ExecuteParams,
    spec: &CommandSpec,
    hit: Entry,
    stream: bool,
    passed: streams::PassedOut,
) -> Result<ExecuteResult, ErrorObjectOwned> {
    let execution = state.executions.begin(&spec.name, request.cancel.clone()).await.map_err(no_id)?;
    let (started, started_at) = (Instant::now(), SystemTime::now());
    let mut sink = ResultSink::new(request, execution.id, stream, state.config().server.max_captured_output, false);
    sink.passed = passed;
    for chunk in hit.output {
        // The client is gone, or cancelled and takes no more.
        if !sink.accept(chunk).await {
            break;
        }
    }
    let (exit_code, duration) = (hit.exit_code, started.elapsed());
    let outcome = Outcome { status: ExecStatus::Completed, exit_code, signal: None, duration };
    let id = execution.id;
    execution.finish(outcome.status);
    let result = sink.result(id, params.command.clone(), outcome, true);
    Ok(recorded(state, request, params, started_at, result).await)
}

/// A call cancelled while it waited in the queue: it never ran, and is recorded so.
async fn never_ran(
    state: &State,
    request: &RequestCtx,
    params: &ExecuteParams,
    spec: &CommandSpec,
    stream: bool,
) -> Result<ExecuteResult, ErrorObjectOwned> {
    let execution = state.executions.begin(&spec.name, request.cancel.clone()).await.map_err(no_id)?;
    let id = execution.id;
    execution.finish(ExecStatus::Cancelled);
    let outcome = Outcome::ended(ExecStatus::Cancelled, Instant::now());
    let result = ResultSink::new(request, id, stream, 0, false).result(id, params.command.clone(), outcome, false);
    Ok(recorded(state, request, params, SystemTime::now(), result).await)
}

/// The call's own time limit, if it sets one.
fn requested_timeout(timeout: Option<f64>) -> Result<Option<Duration>, ErrorObjectOwned> {
    timeout
        .map(|secs| {
            // 0 is no limit at all: neither the manifest's nor `command_timeout`.
            Seconds::new(secs).map(Seconds::duration).map_err(|_| {
                error(
                    code::INVALID_PARAMS,
                    "invalid params: `timeout` must be a number of seconds from 0 (no limit) to 1e9",
                )
            })
        })
        .transpose()
}

/// `1 command`, `2 commands`.
fn plural(count: usize, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

/// The error for a call that could not get an execution id.
fn no_id(err: IdsError) -> ErrorObjectOwned {
    tracing::error!("{err}");
    error(code::INTERNAL_ERROR, format!("{err}; free space for the history or the runtime dir and run it again"))
}

/// Refuses an environment that cannot be passed on as it was sent: a variable whose name is
/// empty or holds `=` (the child would see another name, or none), or that holds a NUL byte.
fn check_env(env: Option<&BTreeMap<String, String>>) -> Result<(), ErrorObjectOwned> {
    for (name, value) in env.into_iter().flatten() {
        let problem = if name.is_empty() {
            "an empty name"
        } else if name.contains('=') {
            "`=` in its name"
        } else if name.contains('\0') {
            "a NUL byte in its name"
        } else if value.contains('\0') {
            "a NUL byte in its value"
        } else {
            continue;
        };
        return Err(error(
            code::INVALID_PARAMS,
            format!(
                "invalid params: `env` variable {name:?} has {problem}; a name must be non-empty, without `=` or NUL, and a value without NUL"
            ),
        ));
    }
    Ok(())
}

/// Refuses a `cwd` that is not a directory, before anything runs, for every kind of command.
async fn check_cwd(cwd: Option<&str>) -> Result<(), ErrorObjectOwned> {
    let Some(cwd) = cwd else { return Ok(()) };
    let problem = match tokio::fs::metadata(cwd).await {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "is not a directory".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_owned(),
        Err(e) => format!("cannot be used ({e})"),
    };
    Err(error(
        code::INVALID_PARAMS,
        format!("invalid params: the working directory `{cwd}` (`cwd`) {problem} on the server; nothing was run"),
    ))
}

/// The error for a command that cannot be run by its name.
fn lookup_error(err: LookupError) -> ErrorObjectOwned {
    match err {
        LookupError::NotFound(not_found) => ErrorObject::owned(
            code::COMMAND_NOT_FOUND,
            not_found.to_string(),
            Some(serde_json::json!({ "command": not_found.name, "suggestions": not_found.suggestions })),
        ),
        broken @ LookupError::Broken(_) => error(code::COMMAND_BROKEN, broken.to_string()),
    }
}

/// Writes the execution to the history (when on) and hands the result back once it is
/// committed: a client never sees a result that a crash could lose from the history.
async fn recorded(
    state: &State,
    request: &RequestCtx,
    params: &ExecuteParams,
    started: SystemTime,
    result: ExecuteResult,
) -> ExecuteResult {
    if let Some(history) = &state.history {
        history
            .record(Record {
                id: result.id,
                command: result.command.clone(),
                args: params.args.clone(),
                cwd: params.cwd.clone(),
                transport: request.transport,
                started,
                duration_ms: result.duration_ms,
                status: result.status,
                exit_code: result.exit_code,
                signal: result.signal,
                cached: result.cached,
                detached: false,
            })
            .await;
    }
    result
}

/// Drops the stdin route of a request when its execution is over.
struct ReleaseStdin<'a>(&'a RequestCtx);

impl Drop for ReleaseStdin<'_> {
    fn drop(&mut self) {
        self.0.stdin.release(&self.0.key);
    }
}

fn stdin_source(params: &ExecuteParams, request: &RequestCtx) -> Result<Stdin, ErrorObjectOwned> {
    let given = [params.stdin.is_some(), params.stdin_b64.is_some(), params.stdin_stream];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(error(
            code::INVALID_PARAMS,
            "invalid params: give at most one of `stdin`, `stdin_b64` and `stdin_stream`",
        ));
    }
    if let Some(text) = &params.stdin {
        return Ok(Stdin::Bytes(Bytes::from(text.clone())));
    }
    if let Some(b64) = &params.stdin_b64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| error(code::INVALID_PARAMS, format!("invalid params: `stdin_b64` is not base64: {e}")))?;
        return Ok(Stdin::Bytes(Bytes::from(bytes)));
    }
    if params.stdin_stream {
        return match request.stdin.claim(&request.key) {
            Some(rx) => Ok(Stdin::Stream(rx)),
            None => Err(error(code::INVALID_PARAMS, "invalid params: this request id is already used for stdin")),
        };
    }
    Ok(Stdin::Null)
}

/// The cache key and TTL when this call's result may come from, or go to, the cache.
fn cache_plan(
    state: &State,
    spec: &CommandSpec,
    params: &ExecuteParams,
    stdin: &Stdin,
    generation: u64,
) -> Option<(String, Duration)> {
    let CommandKind::Manifest(manifest) = &spec.kind else { return None };
    let policy = manifest.cache.as_ref()?;
    if !state.config().api_daemon.enable_command_caching || params.no_cache || !matches!(stdin, Stdin::Null) {
        return None;
    }
    let env: Vec<Option<&String>> =
        policy.env.iter().map(|name| params.env.as_ref().and_then(|env| env.get(name))).collect();
    let key = serde_json::json!([spec.name, generation, params.args, params.cwd, policy.env, env]).to_string();
    Some((key, policy.ttl))
}

fn shutting_down() -> ErrorObjectOwned {
    error(code::SHUTTING_DOWN, "the server is shutting down; run the command again to start a new one")
}

/// The error for a call that was not admitted.
fn refused(refusal: Refusal) -> ErrorObjectOwned {
    match refusal {
        Refusal::Busy { running, queued } => error(
            code::SERVER_BUSY,
            format!(
                "server busy: {} running and {queued} waiting (max_concurrent_commands, max_queued_commands); try again later",
                plural(running, "command")
            ),
        ),
        Refusal::ShuttingDown => shutting_down(),
    }
}

#[derive(Serialize)]
struct Notification<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: &'a OutputParams,
}

/// Where a command's output goes: `mcli/output` notifications, or a bounded capture for the
/// result; and, for a cacheable call, a copy for the cache.
struct ResultSink<'a> {
    request: &'a RequestCtx,
    /// The execution's id, which every notification names.
    id: u64,
    /// Output goes out as notifications; otherwise into `capture`.
    stream: bool,
    capture: Capture,
    /// The output kept for the cache; dropped when it grows past what the cache keeps.
    kept: Option<Vec<Chunk>>,
    kept_bytes: usize,
    /// The client's own stdout and stderr, passed with the request, when the server writes
    /// the output there itself.
    passed: streams::PassedOut,
}

impl<'a> ResultSink<'a> {
    fn new(request: &'a RequestCtx, id: u64, stream: bool, limit: usize, keep: bool) -> Self {
        let capture = Capture::new(if stream { 0 } else { limit });
        ResultSink {
            request,
            id,
            stream,
            capture,
            kept: keep.then(Vec::new),
            kept_bytes: 0,
            passed: Default::default(),
        }
    }

    fn result(self, id: u64, command: String, outcome: Outcome, cached: bool) -> ExecuteResult {
        let mut result = outcome.to_result(id, command, cached);
        if !self.stream {
            self.capture.attach_to(&mut result);
        }
        result
    }
}

impl OutputSink for ResultSink<'_> {
    /// False when the connection is gone.
    async fn accept(&mut self, chunk: Chunk) -> bool {
        if let Some(kept) = &mut self.kept {
            self.kept_bytes += chunk.data.len();
            if self.kept_bytes > MAX_ENTRY_BYTES {
                self.kept = None;
            } else {
                kept.push(chunk.clone());
            }
        }
        if let Some(written) = self.passed.write(&chunk, &self.request.cancel).await {
            return written;
        }
        if self.stream {
            return send_output(self.request, self.id, chunk).await;
        }
        self.capture.keep(&chunk);
        true
    }
}

/// A slot among `max_concurrent_commands`: at once if one is free, else after a wait in the
/// queue, which a streaming client is told about. `None` when the call was cancelled waiting.
async fn take_slot(state: &State, request: &RequestCtx, stream: bool) -> Result<Option<Slot>, ErrorObjectOwned> {
    if let Some(slot) = state.executions.try_admit() {
        return Ok(Some(slot));
    }
    if stream && state.executions.queue_has_room() {
        send_queued(request, state.executions.queued()).await;
    }
    state.executions.admit(&request.cancel).await.map_err(refused)
}

/// Tells the client its call waits for a free slot, with `ahead` calls before it.
async fn send_queued(request: &RequestCtx, ahead: u64) {
    let message = serde_json::json!({
        "jsonrpc": "2.0",
        "method": QUEUED_NOTIFICATION,
        "params": { "request_id": request.request_id, "ahead": ahead },
    });
    let _ = request.outgoing.send(Bytes::from(message.to_string())).await;
}

/// Queues one `mcli/output` notification; false when the connection is gone.
pub(super) async fn send_output(request: &RequestCtx, id: u64, chunk: Chunk) -> bool {
    let (data, data_b64) = encode_output(&chunk.data);
    let params =
        OutputParams { id, request_id: Some(request.request_id.clone()), stream: chunk.stream, data, data_b64 };
    let message = Notification { jsonrpc: "2.0", method: OUTPUT_NOTIFICATION, params: &params };
    match serde_json::to_vec(&message) {
        Ok(bytes) => request.outgoing.send(Bytes::from(bytes)).await.is_ok(),
        Err(_) => true,
    }
}
