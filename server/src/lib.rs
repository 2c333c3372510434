//! `mcli-server` as a library: [`serve`] runs the daemon until it is shut down, so tests and
//! the binary start it the same way, and [`cli`] is the command line (the binary only parses
//! the flags and hands them over; `start --foreground` takes the name lock and calls `serve`).

#![forbid(unsafe_code)]

pub mod cache;
pub mod cli;
pub mod commands;
pub mod executions;
pub mod handover;
pub mod history;
pub mod http_bridge;
pub mod http_switch;
pub mod ids;
pub mod inherited;
pub mod jobs;
pub mod lifecycle;
pub mod listeners;
pub mod logging;
pub mod methods;
pub mod metrics;
pub mod name;
pub mod reload;
pub mod server_file;
pub mod state;
pub mod transport;
pub mod workers;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mcli_shared::config::Config;
use mcli_shared::paths::ServerPaths;

use crate::commands::Commands;
use crate::lifecycle::SHUTDOWN_GRACE;
use crate::name::{Check, NameGuard};
use crate::state::{Inner, Listening};

/// The idle timeout of a server started on demand, unless the config sets one.
pub const AUTO_STARTED_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long connections get to flush their last replies at the end of shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct ServeOptions {
    pub config: Config,
    pub paths: ServerPaths,
    /// Standard output is a pipe to whoever started the server: write the readiness line there,
    /// then point standard output at /dev/null so the starter's pipe closes.
    pub notify_ready: bool,
    /// A client started this server on demand (it then exits after an hour idle by default).
    pub auto_started: bool,
    /// Also listen on this TCP address (`HOST:PORT`), with the token required.
    pub tcp: Option<String>,
    /// Serve the HTTP bridge on this address (`HOST:PORT`).
    pub http: Option<String>,
    /// Listeners handed over by a service manager or by the server this one replaces: used in
    /// place of binding the socket, `tcp` and `http`.
    pub inherited: inherited::Inherited,
    /// The pid of the server that handed its listeners over (`restart`): it still holds the
    /// name lock until it has finished its commands, and this server keeps its token.
    pub handover_from: Option<u32>,
    /// `--http` asked for the bridge: the config does not switch it on a reload.
    pub http_from_flag: bool,
}

/// Serves until shutdown. `name_lock` is the held lock on `NAME.lock`: it proves that no other
/// live server owns the name, so a socket file left behind can be replaced. Returns the lock
/// (unless another server took the name meanwhile), for the caller to drop last.
pub async fn serve(options: ServeOptions, name_lock: Option<File>) -> anyhow::Result<Option<File>> {
    restore_default_signals_for_commands();
    let ServeOptions { config, paths, notify_ready, auto_started, tcp, http, inherited, handover_from, http_from_flag } =
        options;
    let (history, ids) = open_history(&config, &paths)?;
    // The open metrics listener follows the bridge's rule for servers started on demand.
    let metrics = config.api_daemon.metrics_addr.clone().filter(|_| !auto_started || config.api_daemon.auto_start);
    let mut inherited = inherited;
    let extra = ExtraListeners::bind(tcp, http, metrics, &mut inherited).await?;
    let token = token(&paths, handover_from)?;
    let file = server_file::new(&paths, token.to_string(), extra.listening.tcp.clone(), extra.listening.http.clone());
    let (name, listener) = take_name(&paths, name_lock, file, inherited.socket, handover_from.is_some())?;

    let commands = Commands::new(config.commands_dirs(mcli_shared::paths::process_env));
    let state = Inner::new(config, paths, commands, history, ids, extra.listening.clone());
    // What a dead server of this name left running is ended before anything new starts.
    jobs::recover(&state).await;
    let transports = transport::Transports::new(Arc::clone(&state.lifecycle), methods::table(state.clone()));
    state.listeners.keep(inherited::SOCKET, listener.as_fd());
    state.listeners.set_auto_started(auto_started);
    if let Some(from) = handover_from {
        handover::take_workers(&state, from);
    }
    extra.serve(&state, &transports, token, http_from_flag);
    let (rebound_tx, rebound_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(transport::socket::serve(transports, listener, rebound_rx));
    let guard = tokio::spawn(guard_name(state.clone(), name, rebound_tx));
    tokio::spawn(watch_signals(state.clone(), Signals::install()?));
    tokio::spawn(exit_when_idle(state.clone(), auto_started));
    if let Some((watcher, changes)) = watch_config(&state) {
        tokio::spawn(reload_on_config_change(state.clone(), watcher, changes));
    }
    tokio::spawn(reap_workers(state.clone()));
    tokio::spawn(jobs::answer_cancel_requests(state.clone()));
    announce_ready(&readiness_line(&state), notify_ready)?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    state.lifecycle.stop.cancelled().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let handed_over = state.lifecycle.is_handed_over();
    tracing::info!(handed_over, "shutting down");
    drain(&state, if handed_over { lifecycle::HANDOVER_GRACE } else { SHUTDOWN_GRACE }).await;
    let lock = match guard.await {
        Ok(Some(mut name)) => {
            if handed_over {
                name.disown_socket();
            }
            name.release()
        }
        Ok(None) => None,
        Err(err) => {
            tracing::error!(%err, "the name guard failed");
            None
        }
    };
    tracing::info!("stopped");
    Ok(lock)
}

/// The token clients present over TCP and HTTP: a new one, or the one of the server this one
/// takes over from (read from its server file), so that its clients keep working.
fn token(paths: &ServerPaths, handover_from: Option<u32>) -> anyhow::Result<Arc<str>> {
    let previous = handover_from.and_then(|pid| {
        let text = mcli_shared::paths::read_server_file(&paths.server_file).ok()?;
        mcli_protocol::ServerFile::parse(&text).ok().filter(|file| file.pid == pid)
    });
    match previous {
        Some(file) => Ok(file.token.into()),
        None => Ok(server_file::new_token()?.into()),
    }
}

/// Takes the server's name: binds the socket, or adopts the one handed over (`owned`: by the
/// previous server, whose lock comes later, rather than by a service manager).
fn take_name(
    paths: &ServerPaths,
    lock: Option<File>,
    file: mcli_protocol::ServerFile,
    inherited: Option<std::os::unix::net::UnixListener>,
    owned: bool,
) -> anyhow::Result<(NameGuard, interprocess::os::unix::uds_local_socket::tokio::Listener)> {
    let Some(socket) = inherited else {
        let lock = lock.context("the name lock is not held")?;
        return NameGuard::bind(paths.clone(), lock, file);
    };
    let listener =
        interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(std::os::fd::OwnedFd::from(socket))
            .context("serving the socket handed over")?;
    let name = NameGuard::adopt(paths.clone(), lock, file, &listener, owned)?;
    Ok((name, listener))
}

/// The TCP listener and the HTTP bridge's, when asked for.
struct ExtraListeners {
    tcp: Option<tokio::net::TcpListener>,
    http: Option<tokio::net::TcpListener>,
    /// `GET /metrics` without a token (`[api_daemon] metrics_addr`).
    metrics: Option<tokio::net::TcpListener>,
    listening: Listening,
}

impl ExtraListeners {
    /// Binds `tcp`, `http` and `metrics` (`HOST:PORT`; port 0 picks a free one), unless a
    /// listener for it was handed over.
    async fn bind(
        tcp: Option<String>,
        http: Option<String>,
        metrics: Option<String>,
        inherited: &mut inherited::Inherited,
    ) -> anyhow::Result<ExtraListeners> {
        let tcp = match (inherited.tcp.take(), tcp) {
            (Some(listener), _) => Some(adopt_tcp(listener)?),
            (None, Some(addr)) => Some(transport::tcp::bind(&addr).await?),
            (None, None) => None,
        };
        let http = match (inherited.http.take(), http) {
            (Some(listener), _) => Some(adopt_tcp(listener)?),
            (None, Some(addr)) => Some(
                tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot serve HTTP on {addr}: {e}"))?,
            ),
            (None, None) => None,
        };
        let metrics = match (inherited.metrics.take(), metrics) {
            (Some(listener), _) => Some(adopt_tcp(listener)?),
            (None, Some(addr)) => Some(tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
                anyhow::anyhow!("cannot serve the metrics on {addr} (`[api_daemon] metrics_addr`): {e}")
            })?),
            (None, None) => None,
        };
        let address = |listener: &Option<tokio::net::TcpListener>| -> anyhow::Result<Option<String>> {
            Ok(listener.as_ref().map(|l| l.local_addr()).transpose()?.map(|a| a.to_string()))
        };
        let listening = Listening { tcp: address(&tcp)?, http: address(&http)? };
        if let Some(addr) = address(&metrics)? {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        Ok(ExtraListeners { tcp, http, metrics, listening })
    }

    /// Serves both until shutdown; TCP peers must present `token`, and so must HTTP clients
    /// unless the config turned that off (allowed on loopback only). The HTTP bridge is the
    /// switch's, which a reload may turn off or move unless `--http` asked for it.
    fn serve(self, state: &state::State, transports: &transport::Transports, token: Arc<str>, http_from_flag: bool) {
        if let Some(tcp) = &self.tcp {
            state.listeners.keep(inherited::TCP, tcp.as_fd());
        }
        http_bridge::start(state, transports.clone(), Arc::clone(&token), self.http, http_from_flag);
        if let Some(metrics) = self.metrics {
            state.listeners.keep(inherited::METRICS, metrics.as_fd());
            state.lifecycle.tasks.spawn(transport::http::serve_metrics(transports.clone(), metrics));
        }
        if let Some(tcp) = self.tcp {
            tokio::spawn(transport::tcp::serve(transports.clone(), tcp, token));
        }
    }
}

/// A TCP listener handed over, for tokio.
fn adopt_tcp(listener: std::net::TcpListener) -> anyhow::Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(listener)?)
}

/// The readiness line: the version, every address listened on, the pid.
fn readiness_line(state: &state::State) -> String {
    let (tcp, http) = (&state.listening.tcp, &state.http.addr());
    let extra = tcp.as_ref().map(|a| format!(" and TCP {a}")).unwrap_or_default()
        + &http.as_ref().map(|a| format!(" and HTTP http://{a}")).unwrap_or_default();
    let line = format!(
        "mcli-server {} listening on {}{extra} (pid {})",
        mcli_shared::VERSION,
        state.paths.socket.display(),
        std::process::id()
    );
    tracing::info!("{line}");
    line
}

/// Serves one JSON-RPC session on standard input and output (`mcli-server --stdio`), as an
/// editor spawns it: no socket, no name; the session ends when standard input closes (its
/// running commands with it) or on `shutdown`.
pub async fn serve_stdio(config: Config, paths: ServerPaths) -> anyhow::Result<()> {
    restore_default_signals_for_commands();
    let (history, ids) = open_history(&config, &paths)?;
    if history.is_none()
        && let Err(err) = mcli_shared::paths::ensure_runtime_dir(&paths.dir)
    {
        // Without the history, execution ids are reserved there; each `execute` says why not.
        tracing::warn!("{err}");
    }
    let commands = Commands::new(config.commands_dirs(mcli_shared::paths::process_env));
    let state = Inner::new(config, paths, commands, history, ids, Listening::default());
    let methods = methods::table(state.clone());
    tokio::spawn(reap_workers(state.clone()));
    tokio::spawn(jobs::answer_cancel_requests(state.clone()));
    let session = transport::stdio::serve(transport::Transports::new(Arc::clone(&state.lifecycle), methods));
    tokio::spawn(end_session_on_signals(state.clone(), Signals::install()?));
    tokio::select! {
        () = session => tracing::debug!("standard input closed"),
        () = state.lifecycle.stop.cancelled() => {}
    }
    drain(&state, if state.lifecycle.is_shutting_down() { SHUTDOWN_GRACE } else { Duration::ZERO }).await;
    Ok(())
}

/// The end of a server: lets running commands finish within `grace`, ends the rest, lets the
/// connections flush their last replies, and closes the history.
async fn drain(state: &state::State, grace: Duration) {
    state.executions.wait_for_all(grace).await;
    state.lifecycle.abort.cancel();
    state.lifecycle.close_connections.cancel();
    state.lifecycle.tasks.close();
    if tokio::time::timeout(CLOSE_GRACE, state.lifecycle.tasks.wait()).await.is_err() {
        tracing::warn!("connections did not close in time");
    }
    if let Some(history) = state.history.clone() {
        // Closing waits for the writer thread to commit what is queued: off the async threads.
        let _ = tokio::task::spawn_blocking(move || history.close()).await;
    }
}

/// Opens the history (unless it is turned off), with the first block of execution ids it
/// reserved. A history that cannot be written (a full disk, a broken file) does not keep the
/// server from serving: executions are then answered but not recorded, and ids come from the
/// runtime dir (see `ids.rs`). A history of a newer release is another matter: this server
/// refuses to start rather than run beside it unrecorded.
fn open_history(
    config: &Config,
    paths: &ServerPaths,
) -> anyhow::Result<(Option<history::History>, std::ops::Range<u64>)> {
    if !config.api_daemon.enable_command_history {
        return Ok((None, 0..0));
    }
    let path = history::path(&mcli_shared::paths::state_dir(mcli_shared::paths::process_env), &paths.name);
    let retention = history::Retention {
        max_entries: config.server.history_max_entries,
        max_age: Duration::from_secs_f64(config.server.history_max_age_days * 86_400.0),
    };
    match history::History::open(&path, retention) {
        Ok((history, ids)) => Ok((Some(history), ids)),
        Err(err @ history::HistoryError::Newer { .. }) => Err(err.into()),
        Err(err) => {
            tracing::error!("{err}; executions are answered but not recorded until the server restarts");
            Ok((None, 0..0))
        }
    }
}

/// Writes the readiness line on standard output. A detached server then swaps standard output
/// for /dev/null: the starter reads to the end of its pipe, and `x=$(mcli-client ...)` must not
/// wait for the daemon.
fn announce_ready(line: &str, notify_ready: bool) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).context("writing the readiness line")?;
    if notify_ready {
        let null = File::options().write(true).open("/dev/null").context("opening /dev/null")?;
        nix::unistd::dup2_stdout(&null).context("redirecting standard output")?;
    }
    Ok(())
}

/// Keeps the name's files in place until shutdown; hands the name back for release, or `None`
/// when another server took it.
async fn guard_name(
    state: state::State,
    mut name: NameGuard,
    rebound: tokio::sync::mpsc::Sender<interprocess::os::unix::uds_local_socket::tokio::Listener>,
) -> Option<NameGuard> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(name::CHECK_EVERY) => {}
            () = state.http.changed.notified() => {}
            () = state.lifecycle.stop.cancelled() => return Some(name),
        }
        // Every round, not only when woken: a change made while this task was busy wakes no one.
        name.set_http(state.http.addr());
        if state.lifecycle.is_handed_over() {
            // A successor is starting on this server's listeners and writes the files anew.
            continue;
        }
        match name.check() {
            Ok(Check::Intact) => {}
            Ok(Check::Rebound(listener)) => {
                state.listeners.keep(inherited::SOCKET, listener.as_fd());
                let _ = rebound.send(listener).await;
            }
            Ok(Check::Lost) => {
                tracing::warn!("another server has taken the name; exiting");
                state.lifecycle.begin_shutdown(true);
                return None;
            }
            Err(err) => tracing::warn!("cannot repair the socket: {err:#}"),
        }
    }
}

/// Stops idle workers past their timeout, checking every half second.
async fn reap_workers(state: state::State) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => state.workers.reap(&state.commands.current().await.0),
            () = state.lifecycle.stop.cancelled() => return,
        }
    }
}

/// SIGTERM, SIGINT or SIGHUP end a `--stdio` session as its editor or a process manager means
/// them: its running commands are ended (each whole tree, with the kill grace) before it exits,
/// so none is left behind under pid 1.
async fn end_session_on_signals(state: state::State, signals: Signals) {
    let Signals { term, int, hup } = signals;
    let mut streams = [term, int, hup];
    let any = futures_util::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv())));
    tokio::select! {
        _ = any => {
            tracing::info!("signal received; ending the session's commands");
            state.lifecycle.begin_shutdown(false);
        }
        () = state.lifecycle.stop.cancelled() => {}
    }
}

/// Shuts the server down once it has had no connection and no running command for its idle
/// timeout: `[server] idle_timeout` as now in force (0: never), else an hour for a server a
/// client started on demand, else never.
async fn exit_when_idle(state: state::State, auto_started: bool) {
    loop {
        let timeout = match state.config().server.idle_timeout {
            Some(secs) => Some(secs.duration()).filter(|t| !t.is_zero()),
            None if auto_started => Some(AUTO_STARTED_IDLE_TIMEOUT),
            None => None,
        };
        let check = timeout
            .map_or(Duration::from_secs(1), |t| (t / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
        tokio::select! {
            () = tokio::time::sleep(check) => {}
            () = state.lifecycle.stop.cancelled() => return,
        }
        if let Some(timeout) = timeout
            && state.lifecycle.idle_for() >= timeout
        {
            tracing::info!(idle_secs = timeout.as_secs_f64(), "idle; exiting");
            state.lifecycle.begin_shutdown(true);
            return;
        }
    }
}

/// Watches the config file, from before the server says it is ready: a change right after a
/// start must not be missed. `None` when it cannot be watched (no config dir yet: SIGHUP and
/// `mcli-server reload` still work).
fn watch_config(state: &state::State) -> Option<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>)> {
    use notify::Watcher as _;
    let path = mcli_shared::config::config_path(state.config().file.as_deref(), &mcli_shared::paths::process_env).0;
    let (dir, name) = (path.parent()?.to_path_buf(), path.file_name()?.to_owned());
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(|p| p.file_name() == Some(&name))) {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!(%err, "cannot watch the config file; use `mcli-server reload`");
            return None;
        }
    };
    if let Err(err) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::debug!(dir = %dir.display(), %err, "not watching the config file");
        return None;
    }
    Some((watcher, rx))
}

/// Reloads the config when its watched file changes (written in place or replaced), a moment
/// after the last change, so that an editor's several writes make one reload.
async fn reload_on_config_change(
    state: state::State,
    watcher: notify::RecommendedWatcher,
    mut changes: tokio::sync::mpsc::Receiver<()>,
) {
    loop {
        tokio::select! {
            changed = changes.recv() => if changed.is_none() { break },
            () = state.lifecycle.stop.cancelled() => break,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        while changes.try_recv().is_ok() {}
        log_reload(&state, "the config file changed").await;
    }
    drop(watcher);
}

/// Reloads the config for `why` and says in the log what happened.
async fn log_reload(state: &state::State, why: &str) {
    match reload::reload(state).await {
        Ok(report) if !report.needs_restart.is_empty() => {
            tracing::warn!(needs_restart = ?report.needs_restart, "{why}: reloaded; these keys take effect only after `mcli-server restart`")
        }
        Ok(_) => tracing::info!("{why}: reloaded"),
        Err(errors) => tracing::error!("{why}: the config has errors; the one in force is unchanged:\n{errors}"),
    }
}

/// The daemon's signal handlers, installed before it says it is ready: a signal sent right
/// after a start must not find the default action (which would end the process, files left).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }
}

/// Signals that a process ignores stay ignored in the programs it starts, and a server inherits
/// them from whoever started it: a client run as a background job (`&` ignores SIGQUIT), a
/// program that ignores job control signals. A command run by the server would then ignore
/// them too, whichever client it runs for, and a forwarded SIGQUIT or Ctrl-Z would do nothing.
/// Catching each such signal here (doing nothing with it: it was ignored) gives the commands
/// the default action, as a shell would, since an exec resets caught signals to their default.
/// Called first, before anything can run a command.
fn restore_default_signals_for_commands() {
    use nix::sys::signal::Signal::*;
    const RESTORED: [nix::sys::signal::Signal; 11] =
        [SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ];
    let Some(ignored) = ignored_signals() else { return };
    let caught = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in RESTORED.into_iter().filter(|s| ignored & (1 << (*s as u64 - 1)) != 0) {
        match signal_hook::flag::register(signal as i32, Arc::clone(&caught)) {
            Ok(_) => tracing::debug!(%signal, "inherited as ignored; commands get the default action"),
            Err(err) => tracing::warn!(%signal, %err, "inherited as ignored, and so it stays for commands"),
        }
    }
}

/// The mask of signals this process ignores, as `/proc/self/status` says (`SigIgn`).
fn ignored_signals() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let mask = status.lines().find_map(|line| line.strip_prefix("SigIgn:"))?;
    u64::from_str_radix(mask.trim(), 16).ok()
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one skips the grace period. SIGHUP
/// reloads the config (it never ends the daemon).
async fn watch_signals(state: state::State, mut signals: Signals) {
    let mut graceful = true;
    loop {
        tokio::select! {
            _ = signals.term.recv() => {}
            _ = signals.int.recv() => {}
            _ = signals.hup.recv() => {
                log_reload(&state, "SIGHUP").await;
                continue;
            }
        }
        tracing::info!(graceful, "signal received");
        state.lifecycle.begin_shutdown(graceful);
        graceful = false;
    }
}
