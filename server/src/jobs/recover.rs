//! What a new server does with the jobs of one that died (`kill -9`, a crash, a reboot): a job
//! still marked `running` is ended for good, every process its dead server left is killed
//! (found by the tag prefix its commands carry, see `mcli_shared::tree`), and the job is
//! marked `interrupted` and recorded in the history, so it never shows as running for ever.

use std::time::SystemTime;

use mcli_protocol::ExecStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::meta::Meta;
use super::run::record;
use super::store::Jobs;
use crate::state::State;

/// Ends what dead servers left running and applies the output bound; called by a server that
/// holds its name, before it serves.
pub async fn recover(state: &State) {
    let jobs_dir = state.jobs.root().to_owned();
    let total_max = state.config().server.jobs_output_total_max;
    let found = tokio::task::spawn_blocking(move || {
        let jobs = Jobs::new(jobs_dir);
        let interrupted = interrupt_orphans(&jobs);
        jobs.prune(total_max);
        interrupted
    })
    .await
    .unwrap_or_default();
    if let Some(history) = &state.history {
        for meta in &found {
            history.record(record(meta, "recovered")).await;
        }
    }
}

/// Marks the jobs of dead servers `interrupted`, after killing what those servers left.
fn interrupt_orphans(jobs: &Jobs) -> Vec<Meta> {
    let mut found = Vec::new();
    for (mut meta, _, _) in jobs.all().into_iter().filter(|(m, _, _)| m.is_running()) {
        if server_alive(meta.server_pid) {
            continue;
        }
        let killed = kill_tagged(meta.server_pid);
        let dir = jobs.job_dir(meta.id);
        let last_write = ["stdout", "stderr"]
            .iter()
            .filter_map(|name| std::fs::metadata(dir.join(name)).and_then(|m| m.modified()).ok())
            .max()
            .unwrap_or_else(SystemTime::now);
        let started = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(meta.started_ms);
        meta.duration_ms = last_write.duration_since(started).map_or(0, |d| d.as_millis() as u64);
        meta.state = ExecStatus::Interrupted;
        match meta.write(&dir) {
            Ok(()) => tracing::warn!(job = meta.id, killed, "a job of a dead server was interrupted"),
            Err(err) => tracing::error!(job = meta.id, %err, "cannot mark a job interrupted"),
        }
        found.push(meta);
    }
    found
}

/// Whether `pid` is another live mcli server (a `--stdio` session of the same name runs its
/// own jobs): this process, or one with another name, is not.
pub(super) fn server_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    // A killed server that its parent has not reaped yet is a zombie: dead.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')));
    !zombie
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with("mcli-server"))
}

/// Kills every process of this user whose `MCLI_RUN_TAG` says server `pid` started it, and
/// the process group each leads; returns how many it found.
fn kill_tagged(pid: u32) -> usize {
    let needle = format!("{}={pid}.", mcli_shared::tree::TAG_VAR).into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(found) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|var| var.starts_with(&needle)) {
            let _ = nix::sys::signal::killpg(Pid::from_raw(found), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(found), Signal::SIGKILL);
            killed += 1;
        }
    }
    killed
}
