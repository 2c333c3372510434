//! `mcli-protocol`: the JSON-RPC 2.0 protocol between mcli clients and the server: method names
//! with their typed params and results, the notifications, the error codes, the wire framing
//! ([`framing`]) and the server file ([`ServerFile`]). Data only: the server decides what the
//! methods do, and nothing here spawns a process, reads a config or starts a runtime.

#![forbid(unsafe_code)]

pub mod framing;
mod jobs;
mod seconds;
mod server_file;
pub mod terminal;

pub use jobs::{
    Attach, AttachParams, JobInfo, JobNotFound, Jobs, JobsParams, JobsResult, Wait, WaitParams, WaitResult,
};
pub use seconds::{Seconds, SecondsError};
pub use server_file::ServerFile;
pub use terminal::{
    FORWARDED_SIGNALS, RESIZE_NOTIFICATION, ResizeParams, SignalParams, SignalResult, Streams, TtySize,
};

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The protocol revision. A server refuses a client that announces another one, so that a client
/// and a server from different releases fail in plain words instead of misreading each other.
pub const PROTOCOL_VERSION: u32 = 1;

/// A method of the protocol: its wire name and the shapes of its params and result. The server
/// registers handlers by it and the client library calls through it, so both agree by type.
pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned + Send + 'static;
    type Result: Serialize + DeserializeOwned + Clone + Send + 'static;
}

/// Params of the methods that take none. `{}` and `[]` both decode to it, and an absent `params`
/// is treated as `{}` by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

macro_rules! method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty, $result:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub enum $ty {}
        impl Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}

method!(
    /// Run a named command.
    Execute, "execute", ExecuteParams, ExecuteResult
);
method!(
    /// Describe the running server.
    Status, "status", NoParams, StatusResult
);
method!(
    /// List the commands the server can run.
    List, "list", NoParams, ListResult
);
method!(
    /// Stop the server.
    Shutdown, "shutdown", ShutdownParams, OkResult
);
method!(
    /// A cheap liveness probe.
    Health, "health", NoParams, HealthResult
);

method!(
    /// Cancel a running execution by its id (from `execute`'s output or `status`).
    Cancel, "cancel", CancelParams, OkResult
);

method!(
    /// Past executions, newest first.
    History, "history", HistoryParams, HistoryResult
);

method!(
    /// Read the config again and put it in force (what SIGHUP does).
    Reload, "reload", NoParams, ReloadResult
);

method!(
    /// Start a new server (`program` with `args`) on this one's listeners, then stop this one
    /// once the new one is ready: what `mcli-server restart` asks, over the local socket only.
    Handover, "handover", HandoverParams, HandoverResult
);

/// What `handover` starts: the `mcli-server` program and its arguments beyond those the
/// server adds itself (its name, `start --foreground`, the hand-over).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverParams {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Which of the TCP listeners (`tcp`, `http`) to pass on besides the socket; all when
    /// absent. One not passed is closed when the old server exits.
    #[serde(default)]
    pub listeners: Option<Vec<String>>,
}

/// The new server, as its readiness line describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverResult {
    pub pid: u32,
    pub line: String,
    /// The commands the old server still runs; it exits once they have finished.
    pub running: usize,
}

method!(
    /// Forward a terminal's signal to the process group of a command this connection runs
    /// (see [`terminal`]).
    Signal, "signal", SignalParams, SignalResult
);

/// What `reload` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// The config file read, if there was one.
    pub file: Option<String>,
    /// Keys (`server.kill_grace`) whose new value is in force now.
    pub applied: Vec<String>,
    /// Keys that changed but keep their old value until the server restarts.
    pub needs_restart: Vec<String>,
    /// Warnings met while reading (unknown keys).
    pub warnings: Vec<String>,
}

/// The notification that carries a running command's output, sent before the `execute` response.
pub const OUTPUT_NOTIFICATION: &str = "mcli/output";
/// The request that must open a TCP connection: `{"token": "..."}` from the server file.
pub const AUTHENTICATE_METHOD: &str = "authenticate";

/// The notification that tells a client its `execute` waits for a free slot (all of
/// `max_concurrent_commands` run): params `{request_id, ahead}`, `ahead` being the calls that
/// wait before it. Sent on stream transports, before any output.
pub const QUEUED_NOTIFICATION: &str = "mcli/queued";

/// The notification that carries standard input for an `execute` with `stdin_stream`.
pub const STDIN_NOTIFICATION: &str = "mcli/stdin";
/// The LSP-style notification a client sends to cancel one of its own requests.
pub const CANCEL_REQUEST_NOTIFICATION: &str = "$/cancelRequest";

/// JSON-RPC and mcli error codes.
pub mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL_ERROR: i32 = -32603;
    /// No command has that name; `data.suggestions` lists near names.
    pub const COMMAND_NOT_FOUND: i32 = -32001;
    /// The queue of waiting commands is full.
    pub const SERVER_BUSY: i32 = -32002;
    /// The transport needs a token and none or a wrong one was given.
    pub const UNAUTHORIZED: i32 = -32003;
    /// The server is shutting down and takes no new work.
    pub const SHUTTING_DOWN: i32 = -32004;
    /// The client announced a protocol revision this server does not speak.
    pub const INCOMPATIBLE_PROTOCOL: i32 = -32005;
    /// The command exists but cannot run: its manifest is broken. The message says why.
    pub const COMMAND_BROKEN: i32 = -32006;
    /// The reply would be larger than the server sends in one message; the message names the
    /// limit and how to ask for less.
    pub const REPLY_TOO_LARGE: i32 = -32007;
    /// A `reload` found errors in the config and kept the old one; `data.errors` lists them.
    /// (Not -32008: jsonrpsee uses that for a reply over its size limit.)
    pub const CONFIG_INVALID: i32 = -32020;
    /// No detached job has that id; `data` is a `JobNotFound` (whether its output was pruned).
    pub const JOB_NOT_FOUND: i32 = -32021;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteParams {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The directory the command runs in; the server's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The whole environment the command sees; the server's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Standard input for the command, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Standard input for the command, base64-encoded (for bytes that are not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_b64: Option<String>,
    /// Standard input follows as `mcli/stdin` notifications tagged with this request's id,
    /// the last one with `eof: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_stream: bool,
    /// Seconds; overrides the manifest's and the config's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Send output as `mcli/output` notifications (the default on stream transports) instead of
    /// in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    /// Run as a detached job: the result (`{id, status: "running"}`) comes at once, the output
    /// is kept by the server for `attach`, and the client going away does not end it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detach: bool,
    /// The protocol revision the client speaks; checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// `passed`: the client's stdin, stdout and stderr came with this request (local socket
    /// only); see [`terminal::Streams`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Streams>,
    /// Run the command on a pseudo-terminal of this size, for clients that cannot pass their
    /// own (TCP, editors); see [`terminal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<TtySize>,
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Exited with status 0.
    Completed,
    /// Exited non-zero, was killed by a signal, or could not be started.
    Failed,
    TimedOut,
    Cancelled,
    /// A detached job still running (the result of `execute` with `detach`).
    Running,
    /// A detached job that was running when its server ended.
    Interrupted,
}

impl ExecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Completed => "completed",
            ExecStatus::Failed => "failed",
            ExecStatus::TimedOut => "timed_out",
            ExecStatus::Cancelled => "cancelled",
            ExecStatus::Running => "running",
            ExecStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteResult {
    /// The execution's id, as `status`, `cancel` and `history` know it.
    pub id: u64,
    pub command: String,
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub cached: bool,
    /// Captured output, present when the output was not streamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Captured stdout that is not UTF-8, base64-encoded (then `stdout` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_b64: Option<String>,
    /// Set when the captured output was cut at the server's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// For a call that timed out: the time limit it had, and what set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<TimeLimit>,
}

/// A call's time limit and where it came from, so that a client can say why a command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeLimit {
    pub secs: f64,
    /// What set it: `the call's timeout (-t)`, `` `timeout` in FILE `` (a manifest), or
    /// `command_timeout in FILE` (the config; `command_timeout, the default` without a file).
    pub set_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Params of `mcli/output`. Text that is valid UTF-8 travels in `data`; anything else in
/// `data_b64`, so binary output survives byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputParams {
    /// The execution's id.
    pub id: u64,
    /// The id of the `execute` request this output belongs to, so a client with several requests
    /// in flight on one connection can tell them apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<serde_json::Value>,
    pub stream: Stream,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
}

/// Puts bytes in the field that carries them exactly: `data` for UTF-8, `data_b64` otherwise.
pub fn encode_output(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(bytes))),
    }
}

impl OutputParams {
    /// The bytes this notification carries.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        decode_data(self.data.as_deref(), self.data_b64.as_deref())
    }
}

/// Params of `mcli/stdin`: a piece of standard input for the `execute` request `request_id`
/// (`data` for UTF-8, `data_b64` otherwise), or its end (`eof`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StdinParams {
    pub request_id: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eof: bool,
}

impl StdinParams {
    /// The bytes this notification carries.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        decode_data(self.data.as_deref(), self.data_b64.as_deref())
    }
}

/// The bytes of a `data`/`data_b64` pair.
pub fn decode_data(data: Option<&str>, data_b64: Option<&str>) -> Result<Vec<u8>, base64::DecodeError> {
    match (data, data_b64) {
        (_, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64),
        (Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, None) => Ok(Vec::new()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveCommand {
    pub id: u64,
    pub command: String,
    /// Start time, RFC 3339 in UTC.
    pub started: String,
}

/// A warm worker, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub command: String,
    pub pid: u32,
    /// `idle` or `busy`.
    pub state: String,
    /// Calls served (the one running included).
    pub calls: u64,
    pub rss_kib: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    pub uptime_secs: u64,
    pub socket: String,
    #[serde(default)]
    pub http: Option<String>,
    /// The TCP address, when the server listens on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    pub running: bool,
    pub active_commands: Vec<ActiveCommand>,
    pub queued: u64,
    pub command_history_count: u64,
    pub executed_total: u64,
    pub failed_total: u64,
    /// The effective configuration, after flags, environment and file.
    pub config: serde_json::Value,
    /// The warm workers running now.
    #[serde(default)]
    pub workers: Vec<WorkerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEntry {
    pub name: String,
    pub description: String,
    /// Where the command comes from: `builtin`, or the path of its script or manifest.
    pub source: String,
    /// Why the command cannot run (a broken manifest), when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Served by warm workers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub worker: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListResult {
    pub commands: Vec<CommandEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownParams {
    /// Let running commands finish within the grace period (the default); `false` cancels them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The execution's id.
    pub id: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// At most this many entries (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only executions of this command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Only executions that did not complete with status 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    /// Only executions with a smaller id: the cursor of the next page is the id of the last
    /// entry of the one before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: u64,
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    /// Start time, RFC 3339 in UTC.
    pub started: String,
    pub duration_ms: u64,
    /// `completed`, `failed`, `timed_out` or `cancelled`.
    pub status: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cached: bool,
    /// Run as a detached job.
    #[serde(default)]
    pub detached: bool,
    /// How the request came: `socket`, `stdio`, `tcp` or `http`.
    pub transport: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryResult {
    pub entries: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OkResult {
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResult {
    pub status: String,
    pub version: String,
    pub uptime_secs: u64,
}

/// An outgoing request, as the client library writes it.
#[derive(Debug, Serialize)]
pub struct Request<'a, P> {
    pub jsonrpc: &'static str,
    pub id: u64,
    pub method: &'a str,
    pub params: &'a P,
}

impl<'a, P: Serialize> Request<'a, P> {
    pub fn new(id: u64, method: &'a str, params: &'a P) -> Self {
        Request { jsonrpc: "2.0", id, method, params }
    }
}

/// An error object as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub code: i32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Anything the server sends to a client: a response (with `id`) or a notification (with
/// `method`). Decoded loosely so that a client can skip what it does not know.
#[derive(Debug, Deserialize)]
pub struct Incoming {
    /// `None` for a notification; `Some(Value::Null)` for a response with `"id": null`, such as
    /// the refusal of a connection over the server's limit, which concerns the request sent.
    #[serde(default, deserialize_with = "present")]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    #[serde(default)]
    pub error: Option<ErrorObject>,
}

/// Keeps a present field, `null` included, as `Some`: only an absent field is `None`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_id_is_a_response_and_no_id_a_notification() {
        let busy: Incoming =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"busy"}}"#).unwrap();
        assert_eq!(busy.id, Some(serde_json::Value::Null));
        assert_eq!(busy.error.map(|e| e.code), Some(code::SERVER_BUSY));
        let note: Incoming = serde_json::from_str(r#"{"jsonrpc":"2.0","method":"mcli/output","params":{}}"#).unwrap();
        assert_eq!(note.id, None);
    }

    #[test]
    fn execute_request_has_the_documented_shape() {
        let params = ExecuteParams {
            command: "hello".into(),
            args: vec!["World".into(), "--verbose".into()],
            cwd: Some("/tmp".into()),
            protocol: Some(1),
            ..Default::default()
        };
        let text = serde_json::to_string(&Request::new(7, Execute::NAME, &params)).unwrap();
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":7,"method":"execute","params":{"command":"hello","args":["World","--verbose"],"cwd":"/tmp","protocol":1}}"#
        );
    }

    #[test]
    fn execute_params_name_the_missing_or_unknown_field() {
        let err = serde_json::from_str::<ExecuteParams>(r#"{"args":[]}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `command`"), "{err}");
        let err = serde_json::from_str::<ExecuteParams>(r#"{"command":"x","arg":[]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `arg`"), "{err}");
    }

    #[test]
    fn no_params_accepts_empty_object_and_empty_array() {
        assert_eq!(serde_json::from_str::<NoParams>("{}").unwrap(), NoParams {});
        assert_eq!(serde_json::from_str::<NoParams>("[]").unwrap(), NoParams {});
        assert!(serde_json::from_str::<NoParams>(r#"{"x":1}"#).is_err());
    }

    #[test]
    fn result_status_is_snake_case() {
        let result = ExecuteResult {
            id: 3,
            command: "sleep".into(),
            status: ExecStatus::TimedOut,
            exit_code: None,
            signal: Some(15),
            duration_ms: 12,
            cached: false,
            stdout: None,
            stderr: None,
            stdout_b64: None,
            stderr_b64: None,
            truncated: None,
            time_limit: None,
        };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"id":3,"command":"sleep","status":"timed_out","exit_code":null,"signal":15,"duration_ms":12,"cached":false}"#
        );
    }

    #[test]
    fn output_round_trips_text_and_binary() {
        let (data, b64) = encode_output(b"hi\n");
        assert_eq!((data.as_deref(), b64.as_deref()), (Some("hi\n"), None));
        let bytes = [0xff, 0x00, b'a'];
        let (data, b64) = encode_output(&bytes);
        assert_eq!(data, None);
        let params = OutputParams { id: 1, request_id: None, stream: Stream::Stdout, data, data_b64: b64 };
        let text = serde_json::to_string(&params).unwrap();
        assert_eq!(text, r#"{"id":1,"stream":"stdout","data_b64":"/wBh"}"#);
        let back: OutputParams = serde_json::from_str(&text).unwrap();
        assert_eq!(back.bytes().unwrap(), bytes);
    }
}
