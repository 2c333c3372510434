//! Running a command through the server: the `execute` request, its streamed output and input,
//! the retries when the server is shutting down under the call, and the exit status of the
//! result.

use std::io::{self, Write};
use std::time::Duration;

use mcli_protocol::framing::Framing;
use mcli_protocol::{ExecuteParams, ExecuteResult, OutputParams, PROTOCOL_VERSION, Stream, Streams, code};

use crate::args::Cli;
use crate::connection::{CallError, Connection};
use crate::error::ClientError;
use crate::exit::exit_status;
use crate::passing;
use crate::stdin::{pump_stdin, stdin_is_forwarded};
use crate::target::Target;

/// Attempts at one call when the server is shutting down under it.
const RETRIES: usize = 4;

/// Runs the command of `params` on the server of `target` (starting one when `start` says so)
/// and returns its exit status. A missing server is [`ClientError::NoServer`], for the caller's
/// fallback.
pub fn run(target: &Target, params: &ExecuteParams, start: bool, cli: &Cli) -> Result<i32, ClientError> {
    if cli.tty && !crate::tty::stdin_is_terminal() {
        return Err(ClientError::TtyWithoutTerminal);
    }
    // A server that was shutting down is replaced by a new one. A few attempts, not one: a
    // client told to retry can land in the backlog of the old server's closing listener.
    for attempt in 0..RETRIES {
        // Passed stdin may have been read by a command that started.
        let may_retry =
            attempt + 1 < RETRIES && !cli.tty && (!params.stdin_stream || passing::passes_streams(target, cli));
        let mut conn = target.connect(start, cli.quiet, Framing::Lines)?;
        if !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            conn.on_queued(|ahead| {
                let ahead = if ahead == 0 { "none".to_owned() } else { ahead.to_string() };
                eprintln!("mcli-client: waiting for a free slot, {ahead} ahead");
            });
        }
        let how = if cli.tty {
            How::Tty
        } else if passing::passes_streams(target, cli) {
            How::Passed
        } else {
            How::Streamed
        };
        match execute(&mut conn, params, cli.json, how) {
            // A retry is safe only if no input was consumed for the first attempt.
            Err(CallError::Rpc(err)) if err.code == code::SHUTTING_DOWN && may_retry => {
                // The old server holds its name until it exits; a new one waits for it.
                continue;
            }
            Err(CallError::Io(err))
                if matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
                    && may_retry
                    && conn.may_resend() =>
            {
                // A server that was dying as we connected: it closed without reading the
                // request (a reset or a broken pipe while sending it), so sending it again is
                // safe. A moment's pause lets its listener close.
                std::thread::sleep(Duration::from_millis(20 << attempt));
                continue;
            }
            result => return finish(result, &params.command, cli),
        }
    }
    Err(ClientError::KeptShuttingDown)
}

/// The `execute` request for `name` with `args`, run in this process's directory and
/// environment.
pub fn execute_params(name: &str, args: Vec<String>, cli: &Cli) -> Result<ExecuteParams, ClientError> {
    let cwd = std::env::current_dir().map_err(ClientError::Cwd)?.into_os_string().into_string();
    let cwd = cwd.map_err(ClientError::CwdNotUtf8)?;
    // Variables that are not UTF-8 cannot travel in JSON text; the command runs without them.
    let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    Ok(ExecuteParams {
        command: name.to_owned(),
        args,
        cwd: Some(cwd),
        env: Some(env),
        stdin: None,
        stdin_b64: None,
        stdin_stream: stdin_is_forwarded(),
        timeout: cli.timeout,
        stream: Some(!cli.json),
        no_cache: cli.no_cache,
        detach: false,
        protocol: Some(PROTOCOL_VERSION),
        streams: None,
        tty: None,
    })
}

/// How the command's streams travel.
#[derive(Clone, Copy)]
enum How {
    /// Through the server: `mcli/output` and `mcli/stdin`.
    Streamed,
    /// This process's own, passed to the command over the local socket.
    Passed,
    /// Through the server, with the command on a pseudo-terminal there (`--tty`).
    Tty,
}

/// Writes streamed output as it arrives.
fn write_output(output: &OutputParams) -> io::Result<()> {
    let bytes = output.bytes().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    match output.stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()
        }
        Stream::Stderr => io::stderr().lock().write_all(&bytes),
    }
}

fn execute(conn: &mut Connection, params: &ExecuteParams, json: bool, how: How) -> Result<ExecuteResult, CallError> {
    conn.cancel_on_interrupt()?;
    match how {
        How::Passed => return execute_passing(conn, params),
        How::Tty => return crate::tty::execute(conn, params, write_output),
        How::Streamed => {}
    }
    let id = conn.send_execute(params)?;
    if params.stdin_stream {
        let notifier = conn.notifier();
        let pumping = conn.input_pending();
        // The pump may block on a command that does not read its input; the result ends the
        // client all the same.
        std::thread::spawn(move || {
            pump_stdin(&notifier, id);
            pumping.store(false, std::sync::atomic::Ordering::SeqCst);
        });
    }
    if json { conn.wait_execute(id, |_| Ok(())) } else { conn.wait_execute(id, write_output) }
}

/// Runs the command with this process's stdin, stdout and stderr handed to it; the terminal's
/// signals are forwarded to it meanwhile. Output the server writes itself comes as before.
fn execute_passing(conn: &mut Connection, params: &ExecuteParams) -> Result<ExecuteResult, CallError> {
    use std::os::fd::AsFd as _;
    let params = ExecuteParams { streams: Some(Streams::Passed), stdin_stream: false, ..params.clone() };
    let streams = passing::own_streams().map_err(CallError::Io)?;
    let fds: Vec<_> = streams.iter().map(|stream| stream.as_fd()).collect();
    let id = conn.send_execute_passing(&params, &fds)?;
    conn.wait_execute(id, write_output)
}

/// Turns a call's result into output (with `--json`) and an exit status.
fn finish(result: Result<ExecuteResult, CallError>, name: &str, cli: &Cli) -> Result<i32, ClientError> {
    let result = result.map_err(|err| ClientError::from_call(name, err))?;
    crate::exit::say_why_it_ended(&result, cli.quiet);
    if cli.json {
        println!("{}", serde_json::to_string(&result).map_err(ClientError::PrintResult)?);
    }
    Ok(exit_status(&result))
}
