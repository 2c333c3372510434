//! The exit statuses of `mcli-client`: the command's own, passed through ([`exit_status`]), and
//! the client's own for its failures (picked by `ClientError::exit_status`).

use mcli_protocol::{ExecStatus, ExecuteResult};

pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const UNAVAILABLE: i32 = 69;
pub const TEMPFAIL: i32 = 75;
pub const TIMED_OUT: i32 = 124;
/// The command exists but cannot run (a broken manifest), as a shell's 126.
pub const CANNOT_RUN: i32 = 126;
pub const NOT_FOUND: i32 = 127;
pub const INTERRUPTED: i32 = 130;
/// Standard output was closed by its reader, as a shell reports SIGPIPE.
pub const BROKEN_PIPE: i32 = 141;

/// The client's exit status for a command's result.
pub fn exit_status(result: &ExecuteResult) -> i32 {
    match result.status {
        ExecStatus::TimedOut => TIMED_OUT,
        ExecStatus::Cancelled => INTERRUPTED,
        ExecStatus::Completed | ExecStatus::Failed => match (result.exit_code, result.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => FAILURE,
        },
    }
}
