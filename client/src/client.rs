//! The library API for Rust programs: [`Client`], a connection to an mcli server, and
//! [`Command`], one command to run through it. See the crate documentation for an example.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mcli_protocol::{
    Cancel, CancelParams, CommandEntry, ExecStatus, ExecuteParams, ExecuteResult, History, HistoryEntry, HistoryParams,
    List, NoParams, PROTOCOL_VERSION, Status, StatusResult, Stream, code,
};
use mcli_shared::paths::{self, PathError, ServerPaths};

use crate::autostart::{self, StartError, Starter};
use crate::connection::{CallError, ConnectError, Connection};

/// Why a call through the [`Client`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No server runs under this name (and none was to be started).
    #[error("no mcli server is running as `{name}`; start one with `mcli-server start`")]
    NoServer {
        /// The server name that was tried.
        name: String,
    },
    /// The runtime dir or the server name cannot be used.
    #[error(transparent)]
    Paths(#[from] PathError),
    /// Starting a server failed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Connecting failed for another reason than no server listening.
    #[error(transparent)]
    Connect(ConnectError),
    /// The server has no command of that name.
    #[error("{message}")]
    CommandNotFound {
        /// The server's message, which names the command.
        message: String,
        /// Near names the server suggests.
        suggestions: Vec<String>,
    },
    /// The server runs all the commands it may and its queue is full: try again later.
    #[error("{0}")]
    Busy(String),
    /// Any other error the server answered with: its JSON-RPC code and message.
    #[error("{message} (code {code})")]
    Server {
        /// The JSON-RPC error code (see `mcli_protocol::code`).
        code: i32,
        /// The server's message.
        message: String,
    },
    /// The connection failed, or the server sent something this client does not understand.
    #[error(transparent)]
    Call(CallError),
}

impl From<CallError> for Error {
    fn from(err: CallError) -> Self {
        let CallError::Rpc(rpc) = err else { return Error::Call(err) };
        match rpc.code {
            code::COMMAND_NOT_FOUND => {
                let suggestions = rpc
                    .data
                    .as_ref()
                    .and_then(|d| serde_json::from_value::<Vec<String>>(d["suggestions"].clone()).ok())
                    .unwrap_or_default();
                Error::CommandNotFound { message: rpc.message, suggestions }
            }
            code::SERVER_BUSY => Error::Busy(rpc.message),
            code => Error::Server { code, message: rpc.message },
        }
    }
}

/// A connection to an mcli server over its local socket. Calls are blocking and run one at a
/// time; open one `Client` per thread for calls in parallel.
pub struct Client {
    conn: Connection,
}

impl Client {
    /// Connects to the running server named `name` (`mcli-client -s NAME`); fails with
    /// [`Error::NoServer`] when none runs.
    pub fn connect(name: &str) -> Result<Client, Error> {
        let server = server_paths(name)?;
        match Connection::connect(&server.socket) {
            Ok(conn) => Ok(Client { conn }),
            Err(ConnectError::NoServer { .. }) => Err(Error::NoServer { name: name.to_owned() }),
            Err(err) => Err(Error::Connect(err)),
        }
    }

    /// Connects to the default server: `$MCLI_SOCKET_NAME`, else `server`.
    pub fn connect_default() -> Result<Client, Error> {
        Client::connect(&default_name())
    }

    /// Connects to the server named `name`, starting one first when none runs, as
    /// `mcli-client` does (with the `mcli-server` on `PATH`).
    pub fn connect_or_start(name: &str) -> Result<Client, Error> {
        let server = server_paths(name)?;
        let (conn, _) = autostart::connect_or_start(&server, &Starter::from_env(&server))?;
        Ok(Client { conn })
    }

    /// Runs `command` and returns its output once it has ended. A command that fails is not an
    /// error: see [`Output::status`] and [`Output::exit_code`].
    pub fn execute(&mut self, command: &Command) -> Result<Output, Error> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut output = self.execute_streaming(command, |stream, data| match stream {
            Stream::Stdout => stdout.extend_from_slice(data),
            Stream::Stderr => stderr.extend_from_slice(data),
        })?;
        (output.stdout, output.stderr) = (stdout, stderr);
        Ok(output)
    }

    /// Runs `command`, handing each piece of its output to `on_output` as the command writes
    /// it (stdout and stderr apart, byte-exact), and returns how it ended.
    pub fn execute_streaming(
        &mut self,
        command: &Command,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<Output, Error> {
        let result = self.conn.execute(&command.params, |output| {
            let data = output.bytes().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            on_output(output.stream, &data);
            Ok(())
        })?;
        Ok(Output::of(result, Vec::new(), Vec::new()))
    }

    /// What the server is doing: its pid, version, running commands, counters, workers.
    pub fn status(&mut self) -> Result<StatusResult, Error> {
        Ok(self.conn.call::<Status>(&NoParams {})?)
    }

    /// The commands the server can run, sorted by name.
    pub fn list(&mut self) -> Result<Vec<CommandEntry>, Error> {
        Ok(self.conn.call::<List>(&NoParams {})?.commands)
    }

    /// Past executions, newest first, as `filter` selects them.
    pub fn history(&mut self, filter: &HistoryParams) -> Result<Vec<HistoryEntry>, Error> {
        Ok(self.conn.call::<History>(filter)?.entries)
    }

    /// Cancels the running execution `id` (from any connection); false when none runs with it.
    pub fn cancel(&mut self, id: u64) -> Result<bool, Error> {
        Ok(self.conn.call::<Cancel>(&CancelParams { id })?.ok)
    }
}

/// One command to run through a [`Client`], with the arguments, directory, environment and
/// input it gets. Like [`std::process::Command`], it runs in this process's directory and with
/// its environment unless told otherwise.
#[derive(Debug, Clone)]
pub struct Command {
    params: ExecuteParams,
}

impl Command {
    /// The command named `name`, with no arguments, in this process's directory and with its
    /// environment (variables that are not UTF-8 are left out).
    pub fn new(name: impl Into<String>) -> Command {
        let cwd = std::env::current_dir().ok().and_then(|dir| dir.into_os_string().into_string().ok());
        let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Command {
            params: ExecuteParams {
                command: name.into(),
                cwd,
                env: Some(env.collect()),
                stream: Some(true),
                protocol: Some(PROTOCOL_VERSION),
                ..ExecuteParams::default()
            },
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl Into<String>) -> &mut Command {
        self.params.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, args: I) -> &mut Command {
        self.params.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs it in `dir` (which must be UTF-8; another one is left unset: the server's own).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.params.cwd = dir.as_ref().to_str().map(str::to_owned);
        self
    }

    /// Sets one environment variable.
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Command {
        self.params.env.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
        self
    }

    /// Starts from an empty environment.
    pub fn env_clear(&mut self) -> &mut Command {
        self.params.env = Some(BTreeMap::new());
        self
    }

    /// Ends the command after `limit` (status `timed_out`); else the manifest's or the
    /// server's `command_timeout` applies.
    pub fn timeout(&mut self, limit: Duration) -> &mut Command {
        self.params.timeout = Some(limit.as_secs_f64());
        self
    }

    /// Gives the command these bytes as its standard input (else it reads end of file at once).
    pub fn stdin(&mut self, input: impl AsRef<[u8]>) -> &mut Command {
        let (text, b64) = mcli_protocol::encode_output(input.as_ref());
        (self.params.stdin, self.params.stdin_b64) = (text, b64);
        self
    }

    /// Runs it even when a cached result exists.
    pub fn no_cache(&mut self) -> &mut Command {
        self.params.no_cache = true;
        self
    }
}

/// How a command ended, and (from [`Client::execute`]) what it wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The execution id, as `status`, `cancel` and `history` know it.
    pub id: u64,
    /// How it ended: completed (exit code 0), failed, timed out or cancelled.
    pub status: ExecStatus,
    /// The exit code, when the command exited (not killed by a signal, not timed out).
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// How long it ran, as the server measured it (to the millisecond).
    pub duration: Duration,
    /// The result came from the server's cache.
    pub cached: bool,
    /// Everything the command wrote on stdout ([`Client::execute`] only; empty when streamed).
    pub stdout: Vec<u8>,
    /// Everything the command wrote on stderr ([`Client::execute`] only; empty when streamed).
    pub stderr: Vec<u8>,
}

impl Output {
    fn of(result: ExecuteResult, stdout: Vec<u8>, stderr: Vec<u8>) -> Output {
        Output {
            id: result.id,
            status: result.status,
            exit_code: result.exit_code,
            signal: result.signal,
            duration: Duration::from_millis(result.duration_ms),
            cached: result.cached,
            stdout,
            stderr,
        }
    }

    /// Whether the command completed with exit code 0.
    pub fn success(&self) -> bool {
        self.status == ExecStatus::Completed
    }

    /// The exit status a shell would report, as `mcli-client` exits with it: the exit code,
    /// 128+N for signal N, 124 timed out, 130 cancelled.
    pub fn exit_status(&self) -> i32 {
        crate::exit::status_of(self.status, self.exit_code, self.signal)
    }
}

/// The default server name: `$MCLI_SOCKET_NAME`, else `server`.
pub(crate) fn default_name() -> String {
    std::env::var("MCLI_SOCKET_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| paths::DEFAULT_SERVER_NAME.to_owned())
}

/// The files of server `name`, in the checked runtime dir.
fn server_paths(name: &str) -> Result<ServerPaths, PathError> {
    let dir = paths::runtime_dir(paths::process_env);
    paths::check_runtime_dir(&dir)?;
    ServerPaths::new(dir, name)
}
