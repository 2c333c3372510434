//! The wire types of a command's terminal and streams: how an `execute` says that the client
//! passed its own standard input, output and error with the request (`streams: "passed"`, over
//! the local socket only), and the `signal` method that forwards what a terminal sends the
//! client (window changes, Ctrl-Z, `fg`, quit, hang-up) to the command's process group.

use serde::{Deserialize, Serialize};

/// How a command's standard streams reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Streams {
    /// The client's stdin, stdout and stderr came with the request as three descriptors
    /// (`SCM_RIGHTS` on the local socket, attached to the request's bytes): the command reads and
    /// writes them itself, and output never goes through the server as notifications.
    Passed,
    /// Output goes through the server (`mcli/output`), input through `mcli/stdin`: what an
    /// absent `streams` means.
    Streamed,
}

/// The signals a client may forward to its command: what a terminal sends.
pub const FORWARDED_SIGNALS: [&str; 7] = ["INT", "QUIT", "HUP", "TERM", "TSTP", "CONT", "WINCH"];

/// Params of `signal`: send `signal` (a name of [`FORWARDED_SIGNALS`], without `SIG`) to the
/// process group of the command that request `request_id` of this same connection runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalParams {
    /// The id of the `execute` request, as the client sent it.
    pub request_id: serde_json::Value,
    /// `WINCH`, `TSTP`, `CONT`, `QUIT`, `HUP`, `INT` or `TERM`.
    pub signal: String,
}

/// What `signal` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalResult {
    /// False when the command runs no process of its own (a built-in, a worker call) or has
    /// just ended: there was nobody to signal.
    pub delivered: bool,
}

/// The size of a terminal, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// The notification that tells the server the client's terminal changed size, for an `execute`
/// with `tty`: params [`ResizeParams`].
pub const RESIZE_NOTIFICATION: &str = "mcli/resize";

/// Params of `mcli/resize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeParams {
    /// The id of the `execute` request, as the client sent it.
    pub request_id: serde_json::Value,
    pub rows: u16,
    pub cols: u16,
}
