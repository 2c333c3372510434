//! Why the client ends without a command's own status: [`ClientError`], the one place that
//! picks the exit status of a failure ([`ClientError::exit_status`]), and [`report`], the one
//! place that prints it.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use mcli_protocol::{ErrorObject, code};
use mcli_shared::config::ConfigError;
use mcli_shared::paths::PathError;
use mcli_shared::registry::LookupError;

use crate::autostart::StartError;
use crate::connection::{CallError, ConnectError, ReadAhead};
use crate::exit;

/// A failure of the client. `Display` is the message printed after `mcli-client: `.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line names no command to run.
    #[error("no command given")]
    NoCommand,
    /// `--tty` was given but standard input is not a terminal.
    #[error(
        "--tty needs a terminal on standard input (it puts that terminal in raw mode and gives the command a terminal of its size on the server)"
    )]
    TtyWithoutTerminal,
    /// The command runs in the client's directory, which must travel as JSON text.
    #[error("the current directory {0:?} is not valid UTF-8")]
    CwdNotUtf8(OsString),
    /// The current directory cannot be read (it was removed, for one).
    #[error("cannot read the current directory: {0}")]
    Cwd(#[source] io::Error),
    /// The server file of `--server-file` cannot be used.
    #[error(transparent)]
    ServerFile(#[from] ServerFileError),
    /// The runtime directory is unsafe to use, or the server name is not a valid one.
    #[error(transparent)]
    RuntimeDir(#[from] PathError),
    /// Nothing answers, and nothing was to be started: the alternate editor's turn.
    #[error("no server answers")]
    NoServer,
    /// Nothing answers on the TCP address of a `--server-file`; unlike a local server, a remote
    /// one is never started.
    #[error("no server answers on TCP {addr} (from {}); a remote server is not started on demand", .file.display())]
    NoRemoteServer {
        /// The TCP address the server file gives.
        addr: String,
        /// The server file.
        file: PathBuf,
    },
    /// Connecting to the server failed (a busy server exits with 75, anything else with 69).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// No server was running and starting one failed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The server was shutting down at every attempt; a later try may reach its successor.
    #[error("the server kept shutting down; try again")]
    KeptShuttingDown,
    /// The server closed the connection before the command's result came.
    #[error("the server closed the connection while `{command}` ran")]
    ConnectionLost {
        /// The command that was running.
        command: String,
    },
    /// A call failed in a way that has no variant of its own (see [`ClientError::from_call`]).
    #[error(transparent)]
    Call(CallError),
    /// The server answered with an error; its code picks the exit status.
    #[error("{}", .0.message)]
    Rpc(ErrorObject),
    /// The bridge cannot take over the connection's byte stream.
    #[error(transparent)]
    ReadAhead(#[from] ReadAhead),
    /// The bridge cannot get a second handle on the connection's byte stream.
    #[error("{0}")]
    Bridge(#[source] io::Error),
    /// The `--stdio` bridge's connection to the server failed while bytes were passing.
    #[error("the connection to the server failed: {0}")]
    BridgeLost(#[source] io::Error),
    /// No server answers and the `--alternate-editor` program cannot be run.
    #[error("no server is running and the alternate editor `{program}` cannot run: {source}")]
    AlternateEditor {
        /// The alternate editor program.
        program: String,
        /// Why it cannot run.
        source: io::Error,
    },
    /// Writing the command's output here failed (a closed pipe is reported as a shell would).
    #[error("cannot write the output of `{command}`: {source}")]
    Output {
        /// The command whose output it was.
        command: String,
        /// The write error.
        source: io::Error,
    },
    /// The result cannot be printed as JSON (`--json`).
    #[error("cannot print the result: {0}")]
    PrintResult(#[source] serde_json::Error),
    /// A second SIGINT gave up on the command.
    #[error("interrupted")]
    Interrupted,
    /// The configuration cannot be loaded (to run a command in the client, `-a local`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command is unknown or its manifest is broken (to run it in the client, `-a local`).
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The runtime that runs a command in the client (`-a local`) cannot be created.
    #[error("cannot run `{command}` locally: {source}")]
    LocalRuntime {
        /// The command that was to run.
        command: String,
        /// Why the runtime cannot be created.
        source: io::Error,
    },
}

/// Why the server file of `--server-file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServerFileError {
    /// The file cannot be read.
    #[error("cannot read server file {}: {source}", .path.display())]
    Read {
        /// The server file.
        path: PathBuf,
        /// The read error.
        source: io::Error,
    },
    /// The file is not the JSON of a server file.
    #[error("{} is not a server file ({source}); give the `NAME.json` of a running server", .path.display())]
    Parse {
        /// The file given as a server file.
        path: PathBuf,
        /// Why its JSON is not a server file's.
        source: serde_json::Error,
    },
    /// The server listens on its local socket only, so its file has no TCP address and token.
    #[error(
        "server file {} has no TCP address and token; start the server with `mcli-server start --tcp ADDR`",
        .path.display()
    )]
    NoTcp {
        /// The server file.
        path: PathBuf,
    },
}

impl ClientError {
    /// The error for a failed call made to run `command`.
    pub fn from_call(command: &str, err: CallError) -> Self {
        match err {
            CallError::Rpc(err) => ClientError::Rpc(err),
            CallError::Output(source) => ClientError::Output { command: command.to_owned(), source },
            CallError::Interrupted => ClientError::Interrupted,
            CallError::Closed => ClientError::ConnectionLost { command: command.to_owned() },
            other => ClientError::Call(other),
        }
    }

    /// The exit status for this failure (the documented ones: see `mcli-client --help`).
    pub fn exit_status(&self) -> i32 {
        match self {
            ClientError::NoCommand
            | ClientError::TtyWithoutTerminal
            | ClientError::CwdNotUtf8(_)
            | ClientError::Cwd(_) => exit::USAGE,
            ClientError::Connect(ConnectError::Busy(_)) => exit::TEMPFAIL,
            ClientError::ServerFile(_)
            | ClientError::RuntimeDir(_)
            | ClientError::NoServer
            | ClientError::NoRemoteServer { .. }
            | ClientError::Connect(_)
            | ClientError::Start(_)
            | ClientError::KeptShuttingDown
            | ClientError::ConnectionLost { .. }
            | ClientError::Call(_)
            | ClientError::ReadAhead(_)
            | ClientError::Bridge(_)
            | ClientError::BridgeLost(_)
            | ClientError::AlternateEditor { .. } => exit::UNAVAILABLE,
            ClientError::Rpc(err) => match err.code {
                code::COMMAND_NOT_FOUND => exit::NOT_FOUND,
                code::COMMAND_BROKEN => exit::CANNOT_RUN,
                code::JOB_NOT_FOUND => exit::NO_JOB,
                code::INCOMPATIBLE_PROTOCOL | code::SHUTTING_DOWN => exit::UNAVAILABLE,
                code::SERVER_BUSY => exit::TEMPFAIL,
                _ => exit::FAILURE,
            },
            ClientError::Output { source, .. } if source.kind() == io::ErrorKind::BrokenPipe => exit::BROKEN_PIPE,
            ClientError::Lookup(LookupError::NotFound(_)) => exit::NOT_FOUND,
            ClientError::Lookup(LookupError::Broken(_)) => exit::CANNOT_RUN,
            ClientError::Interrupted => exit::INTERRUPTED,
            ClientError::Output { .. }
            | ClientError::PrintResult(_)
            | ClientError::Config(_)
            | ClientError::LocalRuntime { .. } => exit::FAILURE,
        }
    }

    /// Whether the exit status says it all, as a shell reports a closed pipe or a Ctrl-C
    /// without a word.
    fn is_silent(&self) -> bool {
        match self {
            ClientError::Interrupted => true,
            ClientError::Output { source, .. } => source.kind() == io::ErrorKind::BrokenPipe,
            _ => false,
        }
    }
}

/// As [`report`], and with `json` (`--json`) also as one JSON line on standard output, of a
/// stable shape: `{"error": {"code": C, "message": M}}`, where `code` is the server's JSON-RPC
/// error code when the server refused the call, else the client's exit status.
pub fn report_for(json: bool, err: &ClientError) -> i32 {
    if json {
        let code = match err {
            ClientError::Rpc(rpc) => rpc.code,
            other => other.exit_status(),
        };
        println!("{}", serde_json::json!({ "error": { "code": code, "message": err.to_string() } }));
    }
    report(err)
}

/// Prints `err` on standard error (unless its status says it all) and returns its exit status.
pub fn report(err: &ClientError) -> i32 {
    if !err.is_silent() {
        eprintln!("mcli-client: {err}");
    }
    err.exit_status()
}
