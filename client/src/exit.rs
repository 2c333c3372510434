//! The exit statuses of `mcli-client`: the command's own, passed through ([`exit_status`]), and
//! the client's own for its failures (picked by `ClientError::exit_status`).

use mcli_protocol::{ExecStatus, ExecuteResult};

/// Any other failure of the client, and a command that ended with neither an exit code nor a
/// signal.
pub const FAILURE: i32 = 1;
/// A usage error: bad flags, no command, or a current directory that cannot be read or sent.
pub const USAGE: i32 = 2;
/// No server answers and none could be started, or the connection to it failed (sysexits'
/// `EX_UNAVAILABLE`).
pub const UNAVAILABLE: i32 = 69;
/// The server is busy (at its connection limit, or its queue is full): try again later (sysexits'
/// `EX_TEMPFAIL`).
pub const TEMPFAIL: i32 = 75;
/// The command's timeout ended it, as `timeout(1)` reports it.
pub const TIMED_OUT: i32 = 124;
/// No detached job has that id: it never existed, or its output was pruned (sysexits'
/// `EX_NOINPUT`; not 127, which says no command of a name exists).
pub const NO_JOB: i32 = 66;
/// The command exists but cannot run (a broken manifest), as a shell's 126.
pub const CANNOT_RUN: i32 = 126;
/// No command of that name exists, as a shell's 127.
pub const NOT_FOUND: i32 = 127;
/// The command was cancelled or the client interrupted, as a shell reports SIGINT (128 + 2).
pub const INTERRUPTED: i32 = 130;
/// Standard output was closed by its reader, as a shell reports SIGPIPE.
pub const BROKEN_PIPE: i32 = 141;

/// On a terminal (standard error), says why a command ended early: its time limit and what set
/// it, or that it was cancelled. Nothing goes to standard output, and `quiet` says nothing.
pub fn say_why_it_ended(result: &ExecuteResult, quiet: bool) {
    use std::io::IsTerminal as _;
    if quiet || !std::io::stderr().is_terminal() {
        return;
    }
    let name = &result.command;
    match (result.status, &result.time_limit) {
        (ExecStatus::TimedOut, Some(limit)) => {
            eprintln!("mcli-client: `{name}` timed out after {} s ({})", limit.secs, limit.set_by)
        }
        (ExecStatus::TimedOut, None) => eprintln!("mcli-client: `{name}` timed out"),
        (ExecStatus::Cancelled, _) => eprintln!("mcli-client: `{name}` was cancelled"),
        _ => {}
    }
}

/// The client's exit status for a command's result.
pub fn exit_status(result: &ExecuteResult) -> i32 {
    status_of(result.status, result.exit_code, result.signal)
}

/// The exit status for how a command ended, as a shell reports it: its exit code, 128+N for
/// signal N, 124 timed out, 130 cancelled (or a job interrupted by its server's end).
pub fn status_of(status: ExecStatus, exit_code: Option<i32>, signal: Option<i32>) -> i32 {
    match status {
        ExecStatus::TimedOut => TIMED_OUT,
        // A job that its server's end interrupted was ended before its end, as a cancel is.
        ExecStatus::Cancelled | ExecStatus::Interrupted => INTERRUPTED,
        ExecStatus::Running => FAILURE,
        ExecStatus::Completed | ExecStatus::Failed => match (exit_code, signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => FAILURE,
        },
    }
}
