//! `execute`: run a named command, streaming its output as `mcli/output` notifications ahead of
//! the result, or capturing it (up to a limit) into the result when not streaming.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
use mcli_shared::protocol::{
    ExecuteParams, ExecuteResult, OUTPUT_NOTIFICATION, OutputParams, PROTOCOL_VERSION, Stream,
    code, encode_output,
};
use mcli_shared::runner::{self, Chunk, Invocation};
use serde::Serialize;
use tokio::sync::mpsc;

use super::error;
use crate::dispatch::RequestCtx;
use crate::state::State;

/// Captured output kept per stream when not streaming; the rest is dropped and flagged.
const CAPTURE_LIMIT: usize = 1024 * 1024;

pub async fn execute(
    params: ExecuteParams,
    state: State,
    request: RequestCtx,
) -> Result<ExecuteResult, ErrorObjectOwned> {
    if let Some(client) = params.protocol.filter(|p| *p != PROTOCOL_VERSION) {
        return Err(error(
            code::INCOMPATIBLE_PROTOCOL,
            format!(
                "incompatible protocol: the client speaks protocol {client}, this server (mcli {}) speaks protocol {PROTOCOL_VERSION}; restart the server with `mcli-server restart` so both come from the same release",
                mcli_shared::VERSION
            ),
        ));
    }
    if state.is_shutting_down() {
        return Err(error(
            code::SHUTTING_DOWN,
            "the server is shutting down; run the command again to start a new one",
        ));
    }
    let timeout = match params.timeout {
        Some(secs) if !(secs.is_finite() && secs > 0.0 && secs < 1e9) => {
            return Err(error(
                code::INVALID_PARAMS,
                "invalid params: `timeout` must be a positive number of seconds",
            ));
        }
        Some(secs) => Some(Duration::from_secs_f64(secs)),
        None => Some(state.config.api_daemon.command_timeout)
            .filter(|secs| *secs > 0.0)
            .map(Duration::from_secs_f64),
    };
    let spec = state.registry.get(&params.command).map_err(|not_found| {
        ErrorObject::owned(
            code::COMMAND_NOT_FOUND,
            not_found.to_string(),
            Some(serde_json::json!({ "command": not_found.name, "suggestions": not_found.suggestions })),
        )
    })?;

    let invocation = Invocation {
        args: params.args,
        cwd: params.cwd.map(PathBuf::from),
        env: params.env,
        stdin: params.stdin.map(Bytes::from),
        timeout,
    };
    let stream = params.stream.unwrap_or(request.stream_by_default);
    let execution = state.begin_execution(&spec.name);
    let id = execution.id;
    tracing::debug!(execution = id, command = %spec.name, "started");

    let (tx, mut rx) = mpsc::channel::<Chunk>(16);
    let cancel = request.cancel.clone();
    let run = async move { runner::run(&spec, &invocation, &tx, &cancel).await };
    let mut capture = Capture::default();
    let forward = async {
        while let Some(chunk) = rx.recv().await {
            if stream {
                if !send_output(&request, id, chunk).await {
                    // Nobody reads any more: end the command rather than run it blind.
                    request.cancel.cancel();
                }
            } else {
                capture.push(chunk);
            }
        }
    };
    let (outcome, ()) = tokio::join!(run, forward);
    execution.finish(outcome.status);
    tracing::debug!(execution = id, status = outcome.status.as_str(), "ended");

    let (stdout, stderr, truncated) = if stream {
        (None, None, None)
    } else {
        (
            Some(capture.stdout_text()),
            Some(capture.stderr_text()),
            Some(capture.truncated),
        )
    };
    Ok(ExecuteResult {
        id,
        command: params.command,
        status: outcome.status,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        duration_ms: outcome.duration.as_millis() as u64,
        cached: false,
        stdout,
        stderr,
        truncated,
    })
}

#[derive(Serialize)]
struct Notification<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: &'a OutputParams,
}

/// Queues one `mcli/output` notification; false when the connection is gone.
async fn send_output(request: &RequestCtx, id: u64, chunk: Chunk) -> bool {
    let (data, data_b64) = encode_output(&chunk.data);
    let params = OutputParams {
        id,
        request_id: Some(request.request_id.clone()),
        stream: chunk.stream,
        data,
        data_b64,
    };
    let message = Notification {
        jsonrpc: "2.0",
        method: OUTPUT_NOTIFICATION,
        params: &params,
    };
    match serde_json::to_vec(&message) {
        Ok(bytes) => request.outgoing.send(Bytes::from(bytes)).await.is_ok(),
        Err(_) => true,
    }
}

/// Output kept for a non-streamed result, bounded per stream.
#[derive(Default)]
struct Capture {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn push(&mut self, chunk: Chunk) {
        let buf = match chunk.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let room = CAPTURE_LIMIT.saturating_sub(buf.len());
        if chunk.data.len() > room {
            self.truncated = true;
        }
        buf.extend_from_slice(&chunk.data[..chunk.data.len().min(room)]);
    }

    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
