//! `mcli-server restart` without a gap: the running server starts its successor on its own
//! listening sockets (passed as descriptors, the way a service manager passes them), waits for
//! its readiness line, and only then stops accepting. Connections waiting in the socket's
//! backlog are accepted by the successor; calls already running here finish here (within
//! [`HANDOVER_GRACE`](crate::lifecycle::HANDOVER_GRACE)); a call on a connection kept open is
//! told the server is shutting down, and clients retry it on the successor. The socket file
//! stays in place throughout, so no client ever finds nothing listening.
//!
//! The successor reads the token from the server file, so TCP and HTTP clients keep working;
//! it holds the name lock once this server has exited.

use std::os::fd::{AsFd, BorrowedFd};

use mcli_client::autostart::{self, Starter};
use mcli_protocol::{HandoverParams, HandoverResult};

use crate::state::State;

/// Why a hand-over did not happen; this server then goes on serving.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("a restart is already under way")]
    Busy,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("this server has no listener to hand over (an editor session?)")]
    NothingToHand,
    #[error("cannot pass the listeners on: {0}")]
    Duplicate(#[source] std::io::Error),
    #[error("the hand-over failed, so this server goes on serving: {0}")]
    Task(String),
    #[error("the new server did not start, so this one goes on serving: {0}")]
    Start(#[from] autostart::StartError),
}

/// Starts the successor described by `params` on this server's listeners, then stops this
/// server (it finishes what it runs).
pub async fn hand_over(state: &State, params: HandoverParams) -> Result<HandoverResult, HandoverError> {
    let listeners = &state.listeners;
    let Ok(_one) = listeners.one_at_a_time() else { return Err(HandoverError::Busy) };
    if state.lifecycle.is_shutting_down() {
        return Err(HandoverError::ShuttingDown);
    }
    let mut fds = listeners.duplicates().map_err(HandoverError::Duplicate)?;
    if let Some(keep) = &params.listeners {
        fds.retain(|(name, _)| {
            [crate::inherited::SOCKET, crate::inherited::METRICS].contains(name) || keep.iter().any(|kept| kept == name)
        });
    }
    if fds.is_empty() {
        return Err(HandoverError::NothingToHand);
    }
    let mut starter = Starter::from_env(&state.paths);
    starter.program = params.program.into();
    starter.on_demand = listeners.auto_started();
    starter.extra_args = params.args;
    starter.extra_args.extend(["--handover-from".to_owned(), std::process::id().to_string()]);
    // The name guard leaves the server file alone from now on: the successor writes its own.
    state.lifecycle.set_handing_over(true);
    offer_workers(state);
    let paths = state.paths.clone();
    let started = tokio::task::spawn_blocking(move || {
        let borrowed: Vec<(&str, BorrowedFd<'_>)> = fds.iter().map(|(name, fd)| (*name, fd.as_fd())).collect();
        autostart::start_successor(&paths, &starter, &borrowed)
    })
    .await;
    let started = match started {
        Ok(Ok(started)) => started,
        Ok(Err(err)) => {
            take_back(state);
            return Err(err.into());
        }
        Err(join) => {
            take_back(state);
            return Err(HandoverError::Task(join.to_string()));
        }
    };
    state.workers.offered(true);
    tracing::info!(successor = started.pid, "handed the listeners over; finishing the running commands");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::MainPid(started.pid)]);
    let running = state.executions.active().len();
    state.lifecycle.hand_over();
    Ok(HandoverResult { pid: started.pid, line: started.line, running })
}

/// Where the warm workers offered to a successor are described: `NAME.workers.json` in the
/// runtime dir, written by the old server, read and removed by the new one.
fn offer_file(paths: &mcli_shared::paths::ServerPaths) -> std::path::PathBuf {
    paths.dir.join(format!("{}.workers.json", paths.name))
}

/// The offer: this server's pid, and its idle workers.
#[derive(serde::Serialize, serde::Deserialize)]
struct Offer {
    from: u32,
    pools: Vec<crate::workers::HandedPool>,
}

/// Offers the idle warm workers to the successor about to start; on any failure to describe
/// them they stay here.
fn offer_workers(state: &State) {
    let pools = state.workers.offer();
    if pools.is_empty() {
        return;
    }
    let offer = Offer { from: std::process::id(), pools };
    let written = serde_json::to_vec(&offer).map_err(std::io::Error::other).and_then(|text| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = offer_file(&state.paths);
        let _ = std::fs::remove_file(&path);
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?.write_all(&text)
    });
    if let Err(err) = written {
        tracing::warn!(%err, "cannot offer the warm workers to the new server; it starts its own");
        state.workers.offered(false);
    }
}

/// A hand-over that failed: the workers offered go back to their pools, and this server goes
/// on serving.
fn take_back(state: &State) {
    let _ = std::fs::remove_file(offer_file(&state.paths));
    state.workers.offered(false);
    state.lifecycle.set_handing_over(false);
}

/// In the successor: takes over the warm workers that the server `from` offered, if it did.
pub fn take_workers(state: &State, from: u32) {
    let path = offer_file(&state.paths);
    let Ok(text) = mcli_shared::paths::read_own_file(&path, 1024 * 1024) else { return };
    let _ = std::fs::remove_file(&path);
    match serde_json::from_str::<Offer>(&text) {
        Ok(offer) if offer.from == from => {
            let adopted = state.workers.adopt(from, offer.pools);
            tracing::info!(adopted, "took over the warm workers of the previous server");
        }
        Ok(_) => tracing::warn!("ignoring warm workers offered by another server"),
        Err(err) => tracing::warn!(%err, "cannot read the warm workers offered"),
    }
}
