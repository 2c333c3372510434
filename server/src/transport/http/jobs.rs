//! The bridge's job endpoints: `GET /jobs` (the `jobs` method), `GET /jobs/ID` (one job's state
//! and exit code), and `GET /jobs/ID/output` (its output so far as the body; with
//! `?follow=true`, streamed chunked until the job ends).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcli_protocol::{Attach, AttachParams, Jobs, JobsParams, OutputParams, Stream, Wait, WaitParams};
use serde::Deserialize;

use super::bridge::{Bridge, Streamed};
use super::reply::{error, rpc_error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    state: Option<String>,
    limit: Option<u32>,
}

pub async fn list(
    State(bridge): State<Bridge>,
    query: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(JobsQuery { state, limit })) = query else {
        return error(StatusCode::BAD_REQUEST, "query: state (a job state), limit (a number); no other keys");
    };
    match bridge.call::<Jobs>(JobsParams { state, limit }).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(err) => rpc_error(err),
    }
}

pub async fn one(State(bridge): State<Bridge>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else { return bad_id(&id) };
    match bridge.call::<Wait>(WaitParams { ids: vec![id], any: false, timeout: Some(0.0) }).await {
        Ok(mut result) => match result.jobs.pop() {
            Some(job) => axum::Json(job).into_response(),
            None => error(StatusCode::INTERNAL_SERVER_ERROR, "the server answered with no job"),
        },
        Err(err) => rpc_error(err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputQuery {
    follow: Option<bool>,
    /// `stdout` or `stderr`: only that stream (default both, as written).
    stream: Option<Stream>,
}

pub async fn output(
    State(bridge): State<Bridge>,
    Path(id): Path<String>,
    query: Result<Query<OutputQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else { return bad_id(&id) };
    let Ok(Query(OutputQuery { follow, stream })) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "query: follow (true or false), stream (stdout or stderr); no other keys",
        );
    };
    let params = AttachParams { id, follow: Some(follow.unwrap_or(false)), ..AttachParams::default() };
    let mut rx = bridge.streamed::<Attach>(params);
    // The first message says whether the job exists: an error before any output is the answer.
    let first = match rx.recv().await {
        Some(Streamed::Done(Err(err))) => return rpc_error(err),
        Some(first) => first,
        None => return error(StatusCode::INTERNAL_SERVER_ERROR, "the attach call ended without an answer"),
    };
    let pieces = futures_util::stream::unfold((Some(first), rx), move |(first, mut rx)| async move {
        let mut next = match first {
            Some(first) => Some(first),
            None => rx.recv().await,
        };
        loop {
            match next? {
                Streamed::Note(message) => {
                    if let Some(bytes) = output_bytes(&message, stream) {
                        return Some((Ok::<_, std::io::Error>(bytes), (None, rx)));
                    }
                }
                Streamed::Done(_) => return None,
            }
            next = rx.recv().await;
        }
    });
    ([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(pieces)).into_response()
}

/// The bytes of an `mcli/output` notification, when of the stream asked for.
fn output_bytes(message: &[u8], only: Option<Stream>) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Note {
        params: OutputParams,
    }
    let note: Note = serde_json::from_slice(message).ok()?;
    if only.is_some_and(|s| s != note.params.stream) {
        return None;
    }
    note.params.bytes().ok()
}

fn bad_id(id: &str) -> Response {
    error(StatusCode::BAD_REQUEST, format!("`{id}` is not a job id (a whole number)"))
}
