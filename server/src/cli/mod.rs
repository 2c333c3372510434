//! The `mcli-server` command line: its flags, and a dispatcher over one module per subcommand.
//! `start --foreground` and `--stdio` run the daemon through the library's `serve`; the other
//! subcommands are clients of a running server (or read its files). The binary only parses the
//! flags and calls [`main`].

mod cancel;
mod commands;
mod common;
mod completions;
mod config;
mod doctor;
mod history;
mod jobs;
mod man;
mod reload;
mod restart;
mod start;
mod status;
mod stdio;
mod stop;
mod token;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcli_protocol::HistoryParams;
use mcli_shared::paths::{self, ServerPaths};

use self::start::Listen;

#[derive(Debug, Parser)]
#[command(name = "mcli-server", version = env!("MCLI_LONG_VERSION"), about = "The mcli daemon: runs named commands for mcli-client and editors")]
pub struct Cli {
    /// The server to act on
    #[arg(short = 's', long = "socket-name", env = "MCLI_SOCKET_NAME", value_name = "NAME", default_value = paths::DEFAULT_SERVER_NAME, global = true)]
    socket_name: String,
    /// Config file (default: $MCLI_CONFIG, else $XDG_CONFIG_HOME/mcli/config.toml)
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Serve one JSON-RPC session on standard input and output (what an editor spawns)
    #[arg(long)]
    stdio: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the server in the background (does nothing if it already runs)
    Start {
        /// Run in the foreground, logging to standard error
        #[arg(long)]
        foreground: bool,
        #[command(flatten)]
        listen: Listen,
        /// Standard output is a pipe to a starter waiting for the readiness line
        #[arg(long, hide = true, requires = "foreground")]
        notify_ready: bool,
        /// A client started this server on demand
        #[arg(long, hide = true, requires = "foreground")]
        auto_started: bool,
        /// The server (pid) that hands its listeners over, as descriptors 3 and up (`restart`)
        #[arg(long, hide = true, value_name = "PID", requires = "notify_ready")]
        handover_from: Option<u32>,
    },
    /// Stop the running server and wait until it has exited
    Stop,
    /// Stop the running server, if any, and start a new one
    Restart {
        #[command(flatten)]
        listen: Listen,
    },
    /// List the running and recent detached jobs (`mcli-client --detach`)
    Jobs {
        /// Print the jobs as JSON
        #[arg(long)]
        json: bool,
    },
    /// Cancel a running job (or any running execution) by its id
    Cancel {
        /// The execution id (`mcli-server jobs` lists them)
        id: u64,
    },
    /// Show what the running server is doing (exit status 1 when none runs)
    Status {
        /// Print the status as JSON
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Keep watching: redraw running commands, the queue and recent results in place on a
        /// terminal, or print a line per event into a pipe
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes of --watch
        #[arg(long, value_name = "SECONDS", default_value = "1", requires = "watch", value_parser = parse_interval)]
        interval: f64,
    },
    /// Show past executions: a table with the newest at the bottom, or JSON newest first (reads
    /// the history database; no server needed)
    History {
        /// Show at most N entries
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: u32,
        /// Only executions of this command
        #[arg(long, value_name = "NAME")]
        command: Option<String>,
        /// Only executions that did not complete with status 0
        #[arg(long)]
        failed: bool,
        /// Only executions older than this execution id (the next page after the last id shown)
        #[arg(long, value_name = "ID")]
        before: Option<u64>,
        /// Print the entries as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the running server's token (for HTTP and TCP clients)
    Token,
    /// Make the running server read its config again (as SIGHUP does) and say what changed
    Reload {
        /// Print what changed as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check a config file, or show the effective configuration (no server needed)
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// List the commands the server can run
    Commands {
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
        /// Print only the names of the commands that can run, one per line (for completions)
        #[arg(long, conflicts_with = "json")]
        names: bool,
    },
    /// Check the runtime dir, state dir, config, commands dirs, python3 and the running server,
    /// and say what to fix (exit status 1 when something is wrong)
    Doctor {
        /// Print the findings as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the man page of mcli-server, or of mcli-client, as roff
    Man {
        /// The page of mcli-client
        #[arg(long)]
        client: bool,
    },
    /// Print shell completions for mcli-server and mcli-client (command names included)
    Completions {
        /// The shell to complete in
        shell: completions::Target,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// List every error of a config file (FILE, else --config, else the default); exit status 1
    /// when there is any
    Check {
        /// The config file to check
        file: Option<PathBuf>,
    },
    /// Print every setting in effect and where its value comes from (default, file, environment)
    Show {
        /// Print the settings as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line `cli` and returns the exit status; a failure is printed here.
pub fn main(cli: Cli) -> ExitCode {
    mcli_shared::set_program_name("mcli-server");
    mcli_shared::end_quietly_on_broken_stdout();
    raise_fd_limit();
    let json = cli.command.as_ref().is_some_and(Cmd::wants_json);
    match run(cli) {
        Ok(code) => code,
        Err(err) => fail(json, &describe(&err)),
    }
}

/// Reports a failure: the message on standard error and, for a subcommand given `--json`, also
/// `{"error": {"code": 1, "message": ...}}` on standard output; exit status 1.
pub(crate) fn fail(json: bool, message: &str) -> ExitCode {
    if json {
        println!("{}", serde_json::json!({ "error": { "code": 1, "message": message } }));
    }
    eprintln!("mcli-server: {message}");
    ExitCode::FAILURE
}

impl Cmd {
    fn wants_json(&self) -> bool {
        match self {
            Cmd::Status { json, .. }
            | Cmd::Jobs { json }
            | Cmd::History { json, .. }
            | Cmd::Commands { json, .. }
            | Cmd::Reload { json } => *json,
            Cmd::Config { action: ConfigAction::Show { json } } => *json,
            _ => false,
        }
    }
}

/// An error with its causes, as one line: `{err:#}`, without a cause that an error's own
/// message already quotes (many do, to be whole on their own).
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain().map(ToString::to_string) {
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// A daemon with many clients needs more descriptors than the usual soft limit of 1024: take
/// what the hard limit allows.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(1 << 20), hard);
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = paths::runtime_dir(paths::process_env);
    let server = ServerPaths::new(dir, &cli.socket_name)?;
    let config = cli.config.as_deref();
    if cli.stdio && cli.command.is_some() {
        eprintln!("mcli-server: --stdio serves a session by itself and takes no subcommand");
        return Ok(ExitCode::from(2));
    }
    let Some(command) = cli.command else {
        return if cli.stdio { stdio::run(&server, config) } else { usage() };
    };
    match command {
        Cmd::Start { foreground: true, listen, notify_ready, auto_started, handover_from } => {
            let how = start::How { notify_ready, auto_started, handover_from };
            start::foreground(&server, config, &listen, how)
        }
        Cmd::Start { foreground: false, listen, .. } => start::detached(&server, config, &listen),
        Cmd::Stop => stop::run(&server),
        Cmd::Restart { listen } => restart::run(&server, config, &listen),
        Cmd::Status { watch: true, interval, .. } => top::run(&server, std::time::Duration::from_secs_f64(interval)),
        Cmd::Status { json, .. } => status::run(&server, json),
        Cmd::Jobs { json } => jobs::run(&server, json),
        Cmd::Cancel { id } => cancel::run(&server, id),
        Cmd::Token => token::run(&server),
        Cmd::Reload { json } => reload::run(&server, config, json),
        Cmd::Config { action: ConfigAction::Check { file } } => self::config::check(file.as_deref().or(config)),
        Cmd::Config { action: ConfigAction::Show { json } } => self::config::show(config, json),
        Cmd::History { limit, command, failed, before, json } => {
            history::run(&server, HistoryParams { limit: Some(limit), command, failed: Some(failed), before }, json)
        }
        Cmd::Commands { names: true, .. } => Ok(commands::names(&server, config)),
        Cmd::Commands { json, .. } => commands::run(&server, config, json),
        Cmd::Completions { shell } => completions::run(shell),
        Cmd::Man { client } => man::run(client),
        Cmd::Doctor { json } => doctor::run(&server, config, json),
    }
}

/// A refresh interval: from 0.05 to 3600 seconds.
fn parse_interval(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if (0.05..=3600.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!("`{text}` is not a number of seconds from 0.05 to 3600")),
    }
}

/// Prints the usage to standard error and returns the usage status.
fn usage() -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    let _ = Cli::command().print_help();
    Ok(ExitCode::from(2))
}
