//! The `mcli-server` command line. `start --foreground` runs the daemon through the library's
//! `serve`; the other subcommands are clients of a running server.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use mcli_client::autostart::{self, Starter};
use mcli_client::cli::QUICK_CALL;
use mcli_client::connection::{ConnectError, Connection};
use mcli_protocol::{self as protocol, HistoryParams, NoParams, ServerFile, ShutdownParams, StatusResult};
use mcli_server::lifecycle::SHUTDOWN_GRACE;
use mcli_server::{ServeOptions, serve};
use mcli_shared::config::{self, Config};
use mcli_shared::lockfile;
use mcli_shared::paths::{self, ServerPaths};
use mcli_shared::registry::Registry;

/// How long a new server waits for an old one to release the name: longer than a graceful
/// shutdown takes.
const NAME_LOCK_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Parser)]
#[command(name = "mcli-server", version, about = "The mcli daemon: runs named commands for mcli-client and editors")]
struct Cli {
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

/// How a server listens and logs.
#[derive(Debug, Clone, clap::Args)]
struct Listen {
    /// Log at debug level
    #[arg(long)]
    debug: bool,
    /// Also listen on this TCP address (loopback unless told otherwise; port 0 picks one);
    /// connections must authenticate with the token of the server file
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Serve the HTTP bridge, on ADDR or on `[api_daemon] host` and `port` (loopback by default)
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    http: Option<String>,
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
    },
    /// Stop the running server and wait until it has exited
    Stop,
    /// Stop the running server, if any, and start a new one
    Restart {
        #[command(flatten)]
        listen: Listen,
    },
    /// Show what the running server is doing (exit status 1 when none runs)
    Status {
        /// Print the status as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show past executions, newest first (reads the history database; no server needed)
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
        /// Print the entries as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the running server's token (for HTTP and TCP clients)
    Token,
    /// List the commands the server can run
    Commands {
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_fd_limit();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mcli-server: {err:#}");
            ExitCode::FAILURE
        }
    }
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
    if cli.stdio && cli.command.is_some() {
        eprintln!("mcli-server: --stdio serves a session by itself and takes no subcommand");
        return Ok(ExitCode::from(2));
    }
    let Some(command) = cli.command else {
        return if cli.stdio { run_stdio(&server, cli.config.as_deref()) } else { usage() };
    };
    match command {
        Cmd::Start { foreground: true, listen, notify_ready, auto_started } => {
            run_foreground(&server, cli.config.as_deref(), &listen, notify_ready, auto_started)
        }
        Cmd::Start { foreground: false, listen, .. } => start_detached(&server, cli.config.as_deref(), &listen),
        Cmd::Stop => stop(&server).map(|_| ExitCode::SUCCESS),
        Cmd::Restart { listen } => {
            stop(&server)?;
            start_detached(&server, cli.config.as_deref(), &listen)
        }
        Cmd::Status { json } => status(&server, json),
        Cmd::Token => token(&server),
        Cmd::History { limit, command, failed, json } => {
            history(&server, HistoryParams { limit: Some(limit), command, failed: Some(failed) }, json)
        }
        Cmd::Commands { json } => commands(&server, cli.config.as_deref(), json),
    }
}

/// Loads the config and applies the command-line flags on top (flag > env > file > default).
fn load_config(file: Option<&std::path::Path>, debug: bool) -> anyhow::Result<Config> {
    let loaded = config::load(file, paths::process_env)?;
    for warning in &loaded.warnings {
        eprintln!("mcli-server: warning: {warning}");
    }
    let mut config = loaded.config;
    config.api_daemon.debug |= debug;
    Ok(config)
}

/// Connects to the running server, if there is one.
fn connect(server: &ServerPaths) -> anyhow::Result<Option<Connection>> {
    paths::check_runtime_dir(&server.dir)?;
    match Connection::connect(&server.socket) {
        Ok(conn) => {
            conn.set_read_timeout(Some(QUICK_CALL))?;
            Ok(Some(conn))
        }
        Err(ConnectError::NoServer { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn not_running(server: &ServerPaths) -> String {
    format!("no server named `{}` is running (nothing answers on {})", server.name, server.socket.display())
}

fn already_running(conn: &mut Connection, server: &ServerPaths) -> anyhow::Result<String> {
    let status = conn.call::<protocol::Status>(&NoParams {})?;
    Ok(format!("mcli-server {} is already running on {} (pid {})", status.version, server.socket.display(), status.pid))
}

/// Prints the usage to standard error and returns the usage status.
fn usage() -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    let _ = Cli::command().print_help();
    Ok(ExitCode::from(2))
}

fn run_stdio(server: &ServerPaths, file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(file, false)?;
    // Standard output carries the protocol: logs go to standard error only.
    mcli_server::logging::init(config.api_daemon.debug, None);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(mcli_server::serve_stdio(config, server.clone()))?;
    // The read of standard input cannot be cancelled: after a `shutdown`, do not wait for it.
    runtime.shutdown_background();
    Ok(ExitCode::SUCCESS)
}

fn run_foreground(
    server: &ServerPaths,
    file: Option<&std::path::Path>,
    listen: &Listen,
    notify_ready: bool,
    auto_started: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(file, listen.debug)?;
    // A detached server's standard error is its log file, which it keeps bounded.
    let log_file = notify_ready.then(|| paths::log_file(&paths::state_dir(paths::process_env), &server.name));
    mcli_server::logging::init(config.api_daemon.debug, log_file);
    paths::ensure_runtime_dir(&server.dir)?;
    if !notify_ready && let Some(mut conn) = connect(server)? {
        bail!("{}; stop it first with `mcli-server stop`", already_running(&mut conn, server)?);
    }
    let lock = match take_name(server)? {
        NameLock::Taken(lock) => lock,
        NameLock::Answering(mut conn) if notify_ready => {
            // The holder answers after all (it had only lost its socket for a moment): that is the
            // server the starter wants.
            let status = conn.call::<protocol::Status>(&NoParams {})?;
            println!("mcli-server {} listening on {} (pid {})", status.version, status.socket, status.pid);
            return Ok(ExitCode::SUCCESS);
        }
        NameLock::Answering(mut conn) => {
            bail!("{}; stop it first with `mcli-server stop`", already_running(&mut conn, server)?)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let http = http_addr(&config, listen, auto_started)?;
    let options =
        ServeOptions { config, paths: server.clone(), notify_ready, auto_started, tcp: listen.tcp.clone(), http };
    let lock = runtime.block_on(serve(options, lock))?;
    // Let go of the name only once nothing of this server runs any more, so that `stop`, which
    // waits for the lock, returns when the server is really gone.
    drop(runtime);
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

/// Where the HTTP bridge listens, if it is on: `--http [ADDR]`, or `[api_daemon] enabled` (for
/// a server started on demand only with `auto_start` too).
fn http_addr(config: &Config, listen: &Listen, auto_started: bool) -> anyhow::Result<Option<String>> {
    let api = &config.api_daemon;
    let addr = match listen.http.as_deref() {
        Some("") => api.http_addr(),
        Some(addr) => addr.to_owned(),
        None if api.enabled && (!auto_started || api.auto_start) => api.http_addr(),
        None => return Ok(None),
    };
    if !api.require_token {
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(host, _)| host).trim_matches(['[', ']']);
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            bail!("`api_daemon.require_token = false` is allowed only for a loopback address, not {addr}");
        }
    }
    Ok(Some(addr))
}

enum NameLock {
    Taken(std::fs::File),
    /// Another server holds the name and answers on the socket.
    Answering(Connection),
}

/// Takes the name lock, waiting while another server holds it without answering (one that is
/// shutting down, or rebinding a deleted socket).
fn take_name(server: &ServerPaths) -> anyhow::Result<NameLock> {
    let deadline = std::time::Instant::now() + NAME_LOCK_WAIT;
    loop {
        let lock = lockfile::lock_within(&server.lock, Duration::ZERO)
            .with_context(|| format!("cannot lock {}", server.lock.display()))?;
        if let Some(lock) = lock {
            return Ok(NameLock::Taken(lock));
        }
        if let Some(conn) = connect(server)? {
            return Ok(NameLock::Answering(conn));
        }
        if std::time::Instant::now() >= deadline {
            let holder = std::fs::read_to_string(&server.server_file)
                .ok()
                .and_then(|text| ServerFile::parse(&text).ok())
                .map(|file| file.pid)
                .map_or_else(
                    || format!("find it with `fuser {}`", server.lock.display()),
                    |pid| format!("its pid is {pid}"),
                );
            bail!(
                "another mcli-server still holds the name `{}` ({}) after {}s without answering on {}; it may be finishing its commands: try again, or stop it ({holder})",
                server.name,
                server.lock.display(),
                NAME_LOCK_WAIT.as_secs(),
                server.socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_detached(server: &ServerPaths, file: Option<&std::path::Path>, listen: &Listen) -> anyhow::Result<ExitCode> {
    // Check the config here too, so that a mistake is reported on this terminal.
    load_config(file, listen.debug)?;
    paths::ensure_runtime_dir(&server.dir)?;
    if let Some(mut conn) = connect(server)? {
        println!("{}", already_running(&mut conn, server)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut starter = Starter::from_env(server);
    starter.on_demand = false;
    starter.program = std::env::current_exe().context("cannot find this executable")?;
    if let Some(file) = file {
        starter.extra_args.extend(["--config".to_owned(), std::path::absolute(file)?.display().to_string()]);
    }
    if listen.debug {
        starter.extra_args.push("--debug".to_owned());
    }
    if let Some(addr) = &listen.tcp {
        starter.extra_args.extend(["--tcp".to_owned(), addr.clone()]);
    }
    if let Some(addr) = &listen.http {
        starter.extra_args.push(format!("--http={addr}"));
    }
    match autostart::start(server, &starter)? {
        Some(started) => println!("{}", started.line),
        None => match connect(server)? {
            Some(mut conn) => println!("{}", already_running(&mut conn, server)?),
            None => bail!("{}", not_running(server)),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the server to shut down, then waits until it has let go of its name lock, which it
/// does only after removing its socket.
fn stop(server: &ServerPaths) -> anyhow::Result<()> {
    let Some(mut conn) = connect(server)? else {
        println!("mcli-server: {}", not_running(server));
        return Ok(());
    };
    let pid = conn.call::<protocol::Status>(&NoParams {})?.pid;
    conn.call::<protocol::Shutdown>(&ShutdownParams { graceful: Some(true) })?;
    let wait = SHUTDOWN_GRACE + Duration::from_secs(5);
    match lockfile::lock_within(&server.lock, wait)? {
        Some(_) => {
            // The lock goes last, as the process ends; wait for the very end too.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while process_alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            println!("mcli-server: stopped the server (pid {pid})");
            Ok(())
        }
        None => bail!("the server (pid {pid}) did not stop within {}s; `kill {pid}` ends it", wait.as_secs()),
    }
}

/// Whether process `pid` still runs (a zombie, waiting to be reaped, does not).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

fn token(server: &ServerPaths) -> anyhow::Result<ExitCode> {
    paths::check_runtime_dir(&server.dir)?;
    if connect(server)?.is_none() {
        eprintln!("mcli-server: {}", not_running(server));
        return Ok(ExitCode::FAILURE);
    }
    let text = std::fs::read_to_string(&server.server_file)
        .with_context(|| format!("cannot read the server file {}", server.server_file.display()))?;
    let file = ServerFile::parse(&text)
        .with_context(|| format!("the server file {} is not a server file", server.server_file.display()))?;
    println!("{}", file.token);
    Ok(ExitCode::SUCCESS)
}

fn status(server: &ServerPaths, json: bool) -> anyhow::Result<ExitCode> {
    let Some(mut conn) = connect(server)? else {
        eprintln!("mcli-server: {}", not_running(server));
        return Ok(ExitCode::FAILURE);
    };
    let status = conn.call::<protocol::Status>(&NoParams {})?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_status(&status));
    }
    Ok(ExitCode::SUCCESS)
}

fn render_status(s: &StatusResult) -> String {
    let mut out = format!(
        "mcli-server {} (protocol {}), pid {}, up {}\nsocket:    {}\n",
        s.version,
        s.protocol,
        s.pid,
        humantime::format_duration(Duration::from_secs(s.uptime_secs)),
        s.socket
    );
    if let Some(http) = &s.http {
        out += &format!("http:      {http}\n");
    }
    out += &format!(
        "state:     {}\ncommands:  {} running, {} queued, {} executed, {} failed, {} in history\n",
        if s.running { "running" } else { "shutting down" },
        s.active_commands.len(),
        s.queued,
        s.executed_total,
        s.failed_total,
        s.command_history_count
    );
    for active in &s.active_commands {
        out += &format!("  #{} {} (since {})\n", active.id, active.command, active.started);
    }
    for w in &s.workers {
        let rss = w.rss_kib.map(|k| format!(", {:.1} MiB", k as f64 / 1024.0)).unwrap_or_default();
        out += &format!("worker:    {} pid {} {}, {} calls{rss}\n", w.command, w.pid, w.state, w.calls);
    }
    out
}

fn history(server: &ServerPaths, filter: HistoryParams, json: bool) -> anyhow::Result<ExitCode> {
    let path = mcli_server::history::path(&paths::state_dir(paths::process_env), &server.name);
    let entries = mcli_server::history::query(&path, &filter)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&protocol::HistoryResult { entries })?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no executions recorded in {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>6}  {:20}  {:>9}  {:9}  {:>4}  COMMAND", "ID", "STARTED", "DURATION", "STATUS", "EXIT");
    for e in entries.iter().rev() {
        let exit = match (e.exit_code, e.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => format!("sig{signal}"),
            (None, None) => "-".to_owned(),
        };
        let status = if e.cached { format!("{} *", e.status) } else { e.status.clone() };
        let mut line = e.command.clone();
        for arg in &e.args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        println!("{:>6}  {:20}  {:>7}ms  {:9}  {:>4}  {line}", e.id, e.started, e.duration_ms, status, exit);
    }
    Ok(ExitCode::SUCCESS)
}

/// Quotes an argument for display when it would not read back as one word.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', "'\\''")) }
}

fn commands(server: &ServerPaths, file: Option<&std::path::Path>, json: bool) -> anyhow::Result<ExitCode> {
    let list = match connect(server)? {
        Some(mut conn) => conn.call::<protocol::List>(&NoParams {})?.commands,
        None => {
            let config = load_config(file, false)?;
            Registry::scan(&config.commands_dirs(paths::process_env)).list()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&protocol::ListResult { commands: list })?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = list.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for command in &list {
        match &command.error {
            None if command.worker => {
                println!("{:width$}  {}  [{}, warm worker]", command.name, command.description, command.source)
            }
            None => println!("{:width$}  {}  [{}]", command.name, command.description, command.source),
            Some(error) => println!("{:width$}  BROKEN: {error}", command.name),
        }
    }
    Ok(ExitCode::SUCCESS)
}
