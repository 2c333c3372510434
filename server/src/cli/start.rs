//! `mcli-server start`: in the background (through the client's race-free starter, which runs
//! `start --foreground --notify-ready`), or in the foreground, where the daemon runs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use mcli_client::autostart::{self, Starter};
use mcli_protocol::{self as protocol, NoParams};
use mcli_shared::config::Config;
use mcli_shared::paths::{self, ServerPaths};

use super::common::{self, NameLock};
use crate::inherited::{self, Inherited};
use crate::{ServeOptions, serve};

/// How a server listens and logs.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct Listen {
    /// Log at debug level
    #[arg(long)]
    pub(super) debug: bool,
    /// Also listen on this TCP address (loopback unless told otherwise; port 0 picks one);
    /// connections must authenticate with the token of the server file
    #[arg(long, value_name = "ADDR")]
    pub(super) tcp: Option<String>,
    /// Serve the HTTP bridge, on ADDR or on `[api_daemon] host` and `port` (loopback by default)
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    pub(super) http: Option<String>,
    /// How log lines are written: `text`, or `json` (one object per line, for log shippers)
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub(super) log_format: crate::logging::Format,
}

/// Starts a detached server, unless one answers already.
pub(super) fn detached(server: &ServerPaths, file: Option<&Path>, listen: &Listen) -> anyhow::Result<ExitCode> {
    // Check the config here too, so that a mistake is reported on this terminal.
    common::load_config(file, listen.debug)?;
    paths::ensure_runtime_dir(&server.dir)?;
    if let Some(mut conn) = common::connect(server)? {
        println!("{}", common::already_running(&mut conn, server)?);
        return Ok(ExitCode::SUCCESS);
    }
    let starter = starter(server, file, listen)?;
    match autostart::start(server, &starter)? {
        Some(started) => println!("{}", started.line),
        None => match common::connect(server)? {
            Some(mut conn) => println!("{}", common::already_running(&mut conn, server)?),
            None => bail!("{}", common::not_running(server)),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// A starter that runs this executable with the flags given here.
fn starter(server: &ServerPaths, file: Option<&Path>, listen: &Listen) -> anyhow::Result<Starter> {
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
    if listen.log_format == crate::logging::Format::Json {
        starter.extra_args.extend(["--log-format".to_owned(), "json".to_owned()]);
    }
    Ok(starter)
}

/// How a foreground server came to run.
#[derive(Debug, Clone, Copy)]
pub(super) struct How {
    /// Standard output is a starter's readiness pipe.
    pub(super) notify_ready: bool,
    /// A client started it on demand.
    pub(super) auto_started: bool,
    /// The server that hands its listeners over.
    pub(super) handover_from: Option<u32>,
}

/// Runs the daemon in this process until it shuts down. Started by a starter
/// (`notify_ready`), a failure to start is also written on the readiness pipe, so that the
/// starter can say what failed even when the log cannot be written.
pub(super) fn foreground(
    server: &ServerPaths,
    file: Option<&Path>,
    listen: &Listen,
    how: How,
) -> anyhow::Result<ExitCode> {
    // First of all, while this process has one thread: the listeners handed over (by a service
    // manager, or by the server this one replaces) are taken; the rest of what the starter's
    // caller left open is not the daemon's to keep (nor its commands'), except standard input,
    // output (the readiness pipe) and error (the log).
    let inherited = Inherited::take();
    let keep = inherited.as_ref().map_or(0, |taken| taken.count);
    let closed = autostart::close_descriptors_from(inherited::FIRST_FD.saturating_add(keep));
    let served = inherited.and_then(|inherited| serve_foreground(server, file, listen, how, inherited, closed));
    if how.notify_ready
        && let Err(err) = &served
    {
        autostart::report_start_error(&super::describe(err));
    }
    served
}

/// The daemon's life after the descriptors are closed (`closed` says how that went, to be logged
/// once there is a log): config, log, name lock, then `serve`.
fn serve_foreground(
    server: &ServerPaths,
    file: Option<&Path>,
    listen: &Listen,
    how: How,
    inherited: Inherited,
    closed: std::io::Result<()>,
) -> anyhow::Result<ExitCode> {
    let config = common::load_config(file, listen.debug)?;
    // A detached server's standard error is its log file, which it keeps bounded.
    let log_file = how.notify_ready.then(|| paths::log_file(&paths::state_dir(paths::process_env), &server.name));
    crate::logging::init_as(config.api_daemon.debug, log_file, listen.log_format);
    if let Err(err) = closed {
        tracing::warn!("cannot close the descriptors inherited from the starter: {err}");
    }
    paths::ensure_runtime_dir(&server.dir)?;
    let lock = match how.handover_from {
        // The previous server holds the name until it exits; this one takes it then.
        Some(_) => None,
        None => match name_lock(server, how, inherited.socket.is_some())? {
            Some(lock) => Some(lock),
            None => return Ok(ExitCode::SUCCESS),
        },
    };
    let runtime = common::runtime()?;
    let http = http_addr(&config, listen, how.auto_started)?;
    let options = ServeOptions {
        config,
        paths: server.clone(),
        notify_ready: how.notify_ready,
        auto_started: how.auto_started,
        tcp: listen.tcp.clone(),
        http,
        inherited,
        handover_from: how.handover_from,
        http_from_flag: listen.http.is_some(),
    };
    let lock = runtime.block_on(serve(options, lock))?;
    // Let go of the name only once nothing of this server runs any more, so that `stop`, which
    // waits for the lock, returns when the server is really gone.
    drop(runtime);
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

/// Takes the name lock. `Ok(None)`: the holder answers after all (it had only lost its socket
/// for a moment), which is the server a starter wants; its readiness line is printed.
fn name_lock(server: &ServerPaths, how: How, activated: bool) -> anyhow::Result<Option<std::fs::File>> {
    // With a socket from a service manager, a probe would only queue on that very socket.
    if !how.notify_ready
        && !activated
        && let Some(mut conn) = common::connect(server)?
    {
        bail!("{}; stop it first with `mcli-server stop`", common::already_running(&mut conn, server)?);
    }
    match common::take_name(server)? {
        NameLock::Taken(lock) => Ok(Some(lock)),
        NameLock::Answering(mut conn) if how.notify_ready => {
            let status = conn.call::<protocol::Status>(&NoParams {})?;
            println!("mcli-server {} listening on {} (pid {})", status.version, status.socket, status.pid);
            Ok(None)
        }
        NameLock::Answering(mut conn) => {
            bail!("{}; stop it first with `mcli-server stop`", common::already_running(&mut conn, server)?)
        }
    }
}

/// Where the HTTP bridge listens, if it is on: `--http [ADDR]`, or `[api_daemon] enabled` (for
/// a server started on demand only with `auto_start` too).
fn http_addr(config: &Config, listen: &Listen, auto_started: bool) -> anyhow::Result<Option<String>> {
    use crate::http_switch;
    let api = &config.api_daemon;
    let addr = match listen.http.as_deref() {
        Some("") => api.http_addr(),
        Some(addr) => addr.to_owned(),
        None => return http_switch::wanted(config, auto_started).map(|wanted| wanted.addr).map_err(anyhow::Error::msg),
    };
    http_switch::allowed(&addr, api.require_token).map_err(anyhow::Error::msg)?;
    Ok(Some(addr))
}
