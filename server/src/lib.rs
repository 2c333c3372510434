//! `mcli-server` as a library: [`serve`] runs the daemon until it is shut down, so tests and
//! the binary start it the same way. The binary only parses flags, takes the name lock and calls
//! it.

pub mod cache;
pub mod commands;
pub mod connection;
pub mod dispatch;
pub mod listener;
pub mod methods;
pub mod server_file;
pub mod state;
pub mod stdin;

use std::fs::File;
use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context as _;
use mcli_shared::config::Config;
use mcli_shared::paths::ServerPaths;

use crate::commands::Commands;
use crate::state::{Inner, SHUTDOWN_GRACE};

/// How long connections get to flush their last replies at the end of shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct ServeOptions {
    pub config: Config,
    pub paths: ServerPaths,
    /// Standard output is a pipe to whoever started the server: write the readiness line there,
    /// then point standard output at /dev/null so the starter's pipe closes.
    pub notify_ready: bool,
}

/// Serves until shutdown. `name_lock` is the held lock on `NAME.lock`: it proves that no other
/// live server owns the name, so a socket file left behind can be replaced.
pub async fn serve(options: ServeOptions, name_lock: File) -> anyhow::Result<()> {
    let ServeOptions { config, paths, notify_ready } = options;
    remove_if_present(&paths.socket).context("removing the stale socket file")?;
    let listener =
        listener::bind(&paths.socket).with_context(|| format!("cannot listen on {}", paths.socket.display()))?;
    let token = server_file::new_token()?;
    server_file::write(&paths, &server_file::ServerFile::new(&paths, token))?;
    // What this server created, so that at exit it removes its own files and never those of a
    // server that has since taken the name.
    let owned = [FileId::of(&paths.socket), FileId::of(&paths.server_file)];

    let commands = Commands::new(config.commands_dirs(mcli_shared::paths::process_env));
    let state = Inner::new(config, paths, commands);
    let methods = methods::table(state.clone());
    tokio::spawn(listener::accept_loop(state.clone(), methods, listener));
    tokio::spawn(watch_signals(state.clone()));

    let line = format!(
        "mcli-server {} listening on {} (pid {})",
        mcli_shared::VERSION,
        state.paths.socket.display(),
        std::process::id()
    );
    tracing::info!("{line}");
    announce_ready(&line, notify_ready)?;

    state.stop.cancelled().await;
    tracing::info!("shutting down");
    state.wait_for_commands(SHUTDOWN_GRACE).await;
    state.abort.cancel();
    state.close_connections.cancel();
    state.tasks.close();
    if tokio::time::timeout(CLOSE_GRACE, state.tasks.wait()).await.is_err() {
        tracing::warn!("connections did not close in time");
    }
    for (path, id) in [&state.paths.socket, &state.paths.server_file].into_iter().zip(owned) {
        if id.is_some() && FileId::of(path) == id {
            let _ = remove_if_present(path);
        }
    }
    drop(name_lock);
    tracing::info!("stopped");
    Ok(())
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

/// SIGTERM or SIGINT starts a graceful shutdown; a second one skips the grace period.
async fn watch_signals(state: state::State) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    let mut graceful = true;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!(graceful, "signal received");
        state.begin_shutdown(graceful);
        graceful = false;
    }
}

/// A file's identity (device and inode), to tell it from a file later put at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(path: &std::path::Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).ok().map(|m| FileId(m.dev(), m.ino()))
    }
}

fn remove_if_present(path: &std::path::Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
