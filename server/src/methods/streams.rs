//! The terminal part of `execute`: the standard streams a client passed with its request
//! (`streams: "passed"`), and who uses them. A process the server need not watch gets all three
//! and reads and writes them itself; where the server must see the output (a cacheable
//! manifest, a built-in, a worker call), it writes that output to the passed stdout and stderr
//! itself, and a command that takes its input as a stream reads the passed stdin through the
//! server. A call with `tty` gets a pseudo-terminal instead (`mcli_shared::pty`).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{ExecuteParams, Stream, Streams, code};
use mcli_shared::pty::{Pty, setsid_program};
use mcli_shared::registry::{CommandKind, CommandSpec};
use mcli_shared::runner::{Chunk, Stdin};
use mcli_shared::streams::{Passed, is_input, read_in_chunks, write_blocking};
use tokio_util::sync::CancellationToken;

use super::error;
use crate::transport::dispatch::RequestCtx;

/// The streams request `request` passed, when its params say it passed them.
pub fn claim(params: &ExecuteParams, request: &RequestCtx) -> Result<Option<Passed>, ErrorObjectOwned> {
    if params.streams != Some(Streams::Passed) {
        return Ok(None);
    }
    if params.tty.is_some() {
        return Err(error(
            code::INVALID_PARAMS,
            "invalid params: give `tty` or `streams: \"passed\"`, not both: passed streams are the client's own terminal",
        ));
    }
    if params.stdin.is_some() || params.stdin_b64.is_some() || params.stdin_stream {
        return Err(error(
            code::INVALID_PARAMS,
            "invalid params: `streams: \"passed\"` brings the command's stdin; give no `stdin`, `stdin_b64` or `stdin_stream` with it",
        ));
    }
    match request.terminal.claim(&request.key) {
        Some(passed) => Ok(Some(passed)),
        None => Err(error(
            code::INVALID_PARAMS,
            format!(
                "invalid params: `streams: \"passed\"` but no descriptors came with this request on the {} transport; only the local socket passes descriptors (3: stdin, stdout, stderr, attached to the request with SCM_RIGHTS)",
                request.transport
            ),
        )),
    }
}

/// A pseudo-terminal for the command when the call asks for one (`tty`) and the command runs
/// as a process: the slave as its three streams, and the master for the runner; `mcli/resize`
/// reaches it through the connection's terminal routes.
pub fn tty(
    params: &ExecuteParams,
    spec: &CommandSpec,
    request: &RequestCtx,
) -> Result<Option<(Passed, OwnedFd)>, ErrorObjectOwned> {
    let Some(size) = params.tty else { return Ok(None) };
    if !is_process(spec) {
        return Ok(None);
    }
    let failed = |what: String| {
        error(code::INTERNAL_ERROR, format!("the server cannot give the command a terminal: {what}; nothing was run"))
    };
    if setsid_program().is_none() {
        return Err(failed("`setsid` (util-linux) is not installed".to_owned()));
    }
    let pty = Pty::open(size.rows, size.cols).map_err(|e| failed(e.to_string()))?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| failed(e.to_string()));
    let passed = Passed { stdin: Some(dup(&pty.slave)?), stdout: Some(dup(&pty.slave)?), stderr: Some(pty.slave) };
    request.terminal.route_pty(&request.key, Arc::new(dup(&pty.master)?));
    Ok(Some((passed, pty.master)))
}

/// Whether the command runs as a process of its own (a script, a manifest's `run`).
pub fn is_process(spec: &CommandSpec) -> bool {
    match &spec.kind {
        CommandKind::Builtin(_) => false,
        CommandKind::Script(_) => true,
        CommandKind::Manifest(manifest) => manifest.worker.is_none(),
    }
}

/// Whether the passed stdin is input to read (not a terminal, not /dev/null): such a call is
/// not cached, as with `mcli/stdin`.
pub fn stdin_is_input(passed: Option<&Passed>) -> bool {
    passed.and_then(|p| p.stdin.as_ref()).is_some_and(is_input)
}

/// Who uses each passed stream.
#[derive(Default)]
pub struct Plan {
    /// What the process gets as its own descriptors.
    pub process: Passed,
    /// Where the server writes output itself.
    pub out: PassedOut,
    /// The command's input, when it comes from the passed stdin through the server.
    pub stdin: Option<Stdin>,
}

/// Splits `passed` between the command and the server: `watched` when the server must see the
/// output (the call may be cached).
pub fn plan(passed: Option<Passed>, spec: &CommandSpec, watched: bool) -> Plan {
    let Some(mut passed) = passed else { return Plan::default() };
    let is_process = is_process(spec);
    if is_process && !watched {
        return Plan { process: passed, ..Plan::default() };
    }
    let out = PassedOut {
        stdout: passed.stdout.take().map(|fd| Arc::new(File::from(fd))),
        stderr: passed.stderr.take().map(|fd| Arc::new(File::from(fd))),
    };
    if is_process {
        return Plan { process: Passed { stdin: passed.stdin, ..Passed::default() }, out, stdin: None };
    }
    let stdin = passed.stdin.filter(is_input).map_or(Stdin::Null, |fd| Stdin::Stream(read_in_chunks(fd)));
    Plan { process: Passed::default(), out, stdin: Some(stdin) }
}

/// The passed stdout and stderr, when the server writes the output itself.
#[derive(Default)]
pub struct PassedOut {
    stdout: Option<Arc<File>>,
    stderr: Option<Arc<File>>,
}

impl PassedOut {
    /// Writes `chunk` to its passed stream: `None` when that stream was not passed (the chunk
    /// goes the usual way), else whether it could be written (a reader that closed its end
    /// ends the command). A cancel of the call gives the write up.
    pub async fn write(&self, chunk: &Chunk, cancel: &CancellationToken) -> Option<bool> {
        let file = match chunk.stream {
            Stream::Stdout => self.stdout.as_ref(),
            Stream::Stderr => self.stderr.as_ref(),
        }?;
        Some(write_blocking(file, chunk.data.clone(), cancel).await.is_ok())
    }
}
