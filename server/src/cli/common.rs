//! What the subcommands share: the config with the flags on top, reaching a running server,
//! the messages about one, the name lock, and the async runtime of a serving process.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use mcli_client::cli::QUICK_CALL;
use mcli_client::connection::{ConnectError, Connection};
use mcli_protocol::{self as protocol, NoParams, ServerFile};
use mcli_shared::config::{self, Config};
use mcli_shared::lockfile;
use mcli_shared::paths::{self, ServerPaths};

/// How long a new server waits for an old one to release the name: longer than a graceful
/// shutdown takes.
const NAME_LOCK_WAIT: Duration = Duration::from_secs(15);

/// Loads the config and applies the command-line flags on top (flag > env > file > default).
pub(super) fn load_config(file: Option<&Path>, debug: bool) -> anyhow::Result<Config> {
    // Every error at once, so that one edit can fix them all.
    let loaded = config::load_all(file, paths::process_env)?;
    for warning in &loaded.warnings {
        eprintln!("mcli-server: warning: {warning}");
    }
    let mut config = loaded.config;
    config.api_daemon.debug |= debug;
    Ok(config)
}

/// The async runtime of a process that serves (`start --foreground`, `--stdio`); the other
/// subcommands are blocking clients and need none.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Connects to the running server, if there is one. What answers must be that server (this
/// user's process, of the pid its server file names): `stop` and `status` never report on, or
/// stop, a process that is not.
pub(super) fn connect(server: &ServerPaths) -> anyhow::Result<Option<Connection>> {
    paths::check_runtime_dir(&server.dir)?;
    match Connection::connect_server(server) {
        Ok(conn) => {
            conn.set_read_timeout(Some(QUICK_CALL))?;
            Ok(Some(conn))
        }
        Err(ConnectError::NoServer { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The message for a server that does not answer.
pub(super) fn not_running(server: &ServerPaths) -> String {
    format!("no server named `{}` is running (nothing answers on {})", server.name, server.socket.display())
}

/// The message for a server that answers on `conn`, with its version and pid.
pub(super) fn already_running(conn: &mut Connection, server: &ServerPaths) -> anyhow::Result<String> {
    let status = conn.call::<protocol::Status>(&NoParams {})?;
    Ok(format!("mcli-server {} is already running on {} (pid {})", status.version, server.socket.display(), status.pid))
}

/// The outcome of taking the name lock.
pub(super) enum NameLock {
    Taken(std::fs::File),
    /// Another server holds the name and answers on the socket.
    Answering(Box<Connection>),
}

/// Takes the name lock, waiting while another server holds it without answering (one that is
/// shutting down, or rebinding a deleted socket).
pub(super) fn take_name(server: &ServerPaths) -> anyhow::Result<NameLock> {
    let deadline = Instant::now() + NAME_LOCK_WAIT;
    loop {
        let lock = lockfile::lock_within(&server.lock, Duration::ZERO)
            .with_context(|| format!("cannot lock {}", server.lock.display()))?;
        if let Some(lock) = lock {
            return Ok(NameLock::Taken(lock));
        }
        if let Some(conn) = connect(server)? {
            return Ok(NameLock::Answering(Box::new(conn)));
        }
        if Instant::now() >= deadline {
            bail!(
                "another mcli-server still holds the name `{}` ({}) after {}s without answering on {}; it may be finishing its commands: try again, or stop it ({})",
                server.name,
                server.lock.display(),
                NAME_LOCK_WAIT.as_secs(),
                server.socket.display(),
                holder(server)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How to find the process that holds the name: its pid from the server file, else `fuser`.
fn holder(server: &ServerPaths) -> String {
    paths::read_server_file(&server.server_file)
        .ok()
        .and_then(|text| ServerFile::parse(&text).ok())
        .map(|file| file.pid)
        .map_or_else(|| format!("find it with `fuser {}`", server.lock.display()), |pid| format!("its pid is {pid}"))
}
