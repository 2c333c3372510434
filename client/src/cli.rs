//! The `mcli-client` command line: run one command through the server (starting it when
//! needed), stream its output, and exit with its status.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use mcli_protocol::framing::Framing;
use mcli_protocol::{
    ExecStatus, ExecuteParams, ExecuteResult, OutputParams, PROTOCOL_VERSION, STDIN_NOTIFICATION, Seconds, ServerFile,
    StdinParams, Stream, code, encode_output,
};
use mcli_shared::paths::{self, ServerPaths};

use crate::autostart::{self, Starter};
use crate::connection::{CallError, ConnectError, Connection, Notifier};
use crate::local;

/// Exit statuses of the client itself (the command's own status passes through).
pub mod exit {
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
}

#[derive(Debug, Parser)]
#[command(
    name = "mcli-client",
    version,
    about = "Run a command through the mcli server and exit with its status",
    after_help = "Options after COMMAND belong to COMMAND.\n\
                  Exit status: the command's own; 128+N when signal N ended it; 124 timed out; \
                  130 interrupted; 127 unknown command; 69 no server and none could be started; 2 usage error."
)]
pub struct Cli {
    /// When no server answers: empty starts one, `local` runs the command in this process,
    /// anything else is a program run with COMMAND and ARGS
    #[arg(short = 'a', long = "alternate-editor", env = "MCLI_ALTERNATE_EDITOR", value_name = "PROGRAM")]
    pub alternate_editor: Option<String>,
    /// Talk to the server with this name
    #[arg(short = 's', long = "socket-name", env = "MCLI_SOCKET_NAME", value_name = "NAME", default_value = paths::DEFAULT_SERVER_NAME)]
    pub socket_name: String,
    /// End the command after SECONDS
    #[arg(short = 't', long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,
    /// Run the command even if a cached result exists
    #[arg(long)]
    pub no_cache: bool,
    /// Print the result object as JSON (output captured, not streamed)
    #[arg(long)]
    pub json: bool,
    /// Say nothing of the client's own doings (such as starting the server)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Reach the server through the TCP address and token of this server file (`NAME.json`)
    #[arg(short = 'f', long = "server-file", value_name = "FILE")]
    pub server_file: Option<std::path::PathBuf>,
    /// Bridge standard input and output to the server (for editors), instead of running a command
    #[arg(long, conflicts_with_all = ["command", "json", "timeout", "no_cache"])]
    pub stdio: bool,
    /// The command to run, then its arguments
    #[arg(value_name = "COMMAND", required_unless_present = "stdio", trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    pub command: Vec<String>,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    Seconds::parse_positive(text).map(Seconds::get).map_err(|_| format!("`{text}` is not a positive number of seconds"))
}

/// Runs the client with the process's arguments and returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { exit::USAGE } else { 0 };
        }
    };
    run(cli)
}

fn say(quiet: bool, message: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("mcli-client: {message}");
    }
}

fn fail(status: i32, message: std::fmt::Arguments<'_>) -> i32 {
    eprintln!("mcli-client: {message}");
    status
}

/// What to do when no server answers.
enum Fallback {
    Start,
    Local,
    Program(String),
}

fn routing_disabled(value: Option<OsString>) -> bool {
    value.is_some_and(|v| matches!(v.to_string_lossy().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
}

/// Where the server is.
enum Target {
    Socket(ServerPaths),
    Tcp { addr: String, token: String, file: std::path::PathBuf },
}

impl Target {
    fn from_cli(cli: &Cli) -> Result<Target, String> {
        if let Some(file) = &cli.server_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read server file {}: {e}", file.display()))?;
            let info = ServerFile::parse(&text).map_err(|e| {
                format!("{} is not a server file ({e}); give the `NAME.json` of a running server", file.display())
            })?;
            let Some(addr) = info.tcp else {
                return Err(format!(
                    "server file {} has no TCP address and token; start the server with `mcli-server start --tcp ADDR`",
                    file.display()
                ));
            };
            return Ok(Target::Tcp { addr, token: info.token, file: file.clone() });
        }
        let dir = paths::runtime_dir(paths::process_env);
        paths::check_runtime_dir(&dir)
            .and_then(|_| ServerPaths::new(dir, &cli.socket_name))
            .map(Target::Socket)
            .map_err(|e| e.to_string())
    }

    /// Connects, starting a local server when none answers and `start` says so.
    fn connect(&self, start: bool, quiet: bool, framing: Framing) -> Result<Connection, ConnectFailure> {
        let result = match self {
            Target::Socket(server) => Connection::connect(&server.socket),
            Target::Tcp { addr, token, .. } => Connection::connect_tcp(addr, token, framing),
        };
        match (result, self) {
            (Ok(conn), _) => Ok(conn),
            (Err(ConnectError::NoServer { .. }), Target::Socket(server)) if start => {
                match autostart::connect_or_start(server, &Starter::from_env(server)) {
                    Ok((conn, started)) => {
                        if let Some(started) = started {
                            say(quiet, format_args!("started mcli-server (pid {})", started.pid));
                        }
                        Ok(conn)
                    }
                    Err(err) => Err(ConnectFailure::Fatal(err.to_string())),
                }
            }
            (Err(ConnectError::NoServer { .. }), Target::Tcp { addr, file, .. }) if start => {
                Err(ConnectFailure::Fatal(format!(
                    "no server answers on TCP {addr} (from {}); a remote server is not started on demand",
                    file.display()
                )))
            }
            (Err(ConnectError::NoServer { .. }), _) => Err(ConnectFailure::NoServer),
            (Err(err), _) => Err(ConnectFailure::Fatal(err.to_string())),
        }
    }
}

/// Connects to the server the command line names (starting a local one on demand), for the
/// bridge: `Err` in the outer result is a message, in the inner one an exit status.
pub(crate) fn target_of(cli: &Cli, framing: Framing) -> Result<Result<Connection, i32>, String> {
    let target = Target::from_cli(cli)?;
    Ok(match target.connect(true, true, framing) {
        Ok(conn) => Ok(conn),
        Err(ConnectFailure::NoServer) => Err(fail(exit::UNAVAILABLE, format_args!("no server answers"))),
        Err(ConnectFailure::Fatal(err)) => Err(fail(exit::UNAVAILABLE, format_args!("{err}"))),
    })
}

enum ConnectFailure {
    /// Nothing answers (and nothing was to be started): the alternate editor's turn.
    NoServer,
    Fatal(String),
}

/// Attempts at one call when the server is shutting down under it.
const RETRIES: usize = 4;

pub fn run(cli: Cli) -> i32 {
    if cli.stdio {
        return crate::bridge::run(&cli);
    }
    let (name, args) = match cli.command.split_first() {
        Some((name, args)) => (name.clone(), args.to_vec()),
        None => return fail(exit::USAGE, format_args!("no command given")),
    };
    if routing_disabled(std::env::var_os("MCLI_DAEMON_ROUTING")) {
        return local::run(&name, &args, &cli);
    }
    let fallback = match cli.alternate_editor.as_deref() {
        None | Some("") => Fallback::Start,
        Some("local") => Fallback::Local,
        Some(program) => Fallback::Program(program.to_owned()),
    };
    let target = match Target::from_cli(&cli) {
        Ok(target) => target,
        Err(err) => return fail(exit::UNAVAILABLE, format_args!("{err}")),
    };

    let params = match execute_params(&name, args.clone(), &cli) {
        Ok(params) => params,
        Err(status) => return status,
    };
    // A server that was shutting down is replaced by a new one. A few attempts, not one: a
    // client told to retry can land in the backlog of the old server's closing listener.
    for attempt in 0..RETRIES {
        let may_retry = attempt + 1 < RETRIES && !params.stdin_stream;
        let mut conn = match target.connect(matches!(fallback, Fallback::Start), cli.quiet, Framing::Lines) {
            Ok(conn) => conn,
            Err(ConnectFailure::NoServer) => match &fallback {
                Fallback::Local => return local::run(&name, &args, &cli),
                Fallback::Program(program) => return run_program(program, &name, &args),
                Fallback::Start => return fail(exit::UNAVAILABLE, format_args!("no server answers")),
            },
            Err(ConnectFailure::Fatal(err)) => return fail(exit::UNAVAILABLE, format_args!("{err}")),
        };
        match execute(&mut conn, &params, cli.json) {
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
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
                continue;
            }
            result => return report(result, &name, cli.json),
        }
    }
    fail(exit::UNAVAILABLE, format_args!("the server kept shutting down; try again"))
}

fn execute_params(name: &str, args: Vec<String>, cli: &Cli) -> Result<ExecuteParams, i32> {
    let cwd = match std::env::current_dir() {
        Ok(dir) => match dir.into_os_string().into_string() {
            Ok(dir) => dir,
            Err(dir) => {
                return Err(fail(exit::USAGE, format_args!("the current directory {dir:?} is not valid UTF-8")));
            }
        },
        Err(err) => {
            return Err(fail(exit::USAGE, format_args!("cannot read the current directory: {err}")));
        }
    };
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
        protocol: Some(PROTOCOL_VERSION),
    })
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

fn execute(conn: &mut Connection, params: &ExecuteParams, json: bool) -> Result<ExecuteResult, CallError> {
    conn.cancel_on_interrupt()?;
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

/// Whether the command gets this process's standard input: when it is not a terminal, and not
/// /dev/null (which needs no forwarding: the command's input is empty either way).
pub fn stdin_is_forwarded() -> bool {
    use std::os::fd::AsFd;
    let stdin = io::stdin();
    if nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
        return false;
    }
    let Ok(stat) = nix::sys::stat::fstat(stdin.as_fd()) else { return false };
    let is_char_device = (stat.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFCHR;
    let is_dev_null =
        is_char_device && nix::sys::stat::stat("/dev/null").is_ok_and(|null| null.st_rdev == stat.st_rdev);
    !is_dev_null
}

/// Sends standard input to the server as `mcli/stdin` notifications, then its end.
fn pump_stdin(notifier: &Notifier, request_id: u64) {
    use std::io::Read;
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let (data, data_b64) = if n == 0 { (None, None) } else { encode_output(&buf[..n]) };
        let params = StdinParams { request_id: request_id.into(), data, data_b64, eof: n == 0 };
        if notifier.notify(STDIN_NOTIFICATION, &params).is_err() || n == 0 {
            return;
        }
    }
}

/// Turns a call's result into output and an exit status.
fn report(result: Result<ExecuteResult, CallError>, name: &str, json: bool) -> i32 {
    match result {
        Ok(result) => {
            if json {
                match serde_json::to_string(&result) {
                    Ok(text) => println!("{text}"),
                    Err(err) => return fail(1, format_args!("cannot print the result: {err}")),
                }
            }
            exit_status(&result)
        }
        Err(CallError::Rpc(err)) => match err.code {
            code::COMMAND_NOT_FOUND => fail(exit::NOT_FOUND, format_args!("{}", err.message)),
            code::COMMAND_BROKEN => fail(exit::CANNOT_RUN, format_args!("{}", err.message)),
            code::INCOMPATIBLE_PROTOCOL | code::SHUTTING_DOWN => {
                fail(exit::UNAVAILABLE, format_args!("{}", err.message))
            }
            code::SERVER_BUSY => fail(exit::TEMPFAIL, format_args!("{}", err.message)),
            _ => fail(1, format_args!("{}", err.message)),
        },
        Err(CallError::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => exit::BROKEN_PIPE,
        Err(CallError::Output(err)) => fail(1, format_args!("cannot write the output of `{name}`: {err}")),
        Err(CallError::Interrupted) => exit::INTERRUPTED,
        Err(CallError::Closed) => {
            fail(exit::UNAVAILABLE, format_args!("the server closed the connection while `{name}` ran"))
        }
        Err(err) => fail(exit::UNAVAILABLE, format_args!("{err}")),
    }
}

/// The client's exit status for a command's result.
pub fn exit_status(result: &ExecuteResult) -> i32 {
    match result.status {
        ExecStatus::TimedOut => exit::TIMED_OUT,
        ExecStatus::Cancelled => exit::INTERRUPTED,
        ExecStatus::Completed | ExecStatus::Failed => match (result.exit_code, result.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        },
    }
}

/// Runs the alternate program in place of this process.
fn run_program(program: &str, name: &str, args: &[String]) -> i32 {
    let err = Command::new(program).arg(name).args(args).exec();
    fail(exit::UNAVAILABLE, format_args!("no server is running and the alternate editor `{program}` cannot run: {err}"))
}

/// A timeout for calls that should answer at once (status, stop).
pub const QUICK_CALL: Duration = Duration::from_secs(10);
