//! `mcli-server status --watch`: a live view of the running server. On a terminal it redraws
//! one screen in place (plain ANSI: home, clear to the end) with the running commands, the
//! queue, the workers and the latest results; into a pipe or a file it prints plain lines
//! instead, one per event (a command started, a result, the queue changed), for logs and
//! scripts. It ends when the server stops (exit status 1, as `status` with no server).

use std::collections::BTreeSet;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use mcli_client::connection::Connection;
use mcli_protocol::{self as protocol, HistoryEntry, HistoryParams, NoParams, StatusResult};
use mcli_shared::paths::ServerPaths;

use super::common;

/// How many results the screen shows.
const RECENT: u32 = 8;

/// Watches the server, refreshing every `interval`, until it stops or the user interrupts.
pub(super) fn run(server: &ServerPaths, interval: Duration) -> anyhow::Result<ExitCode> {
    let Some(mut conn) = common::connect(server)? else {
        return Ok(super::fail(false, &common::not_running(server)));
    };
    let terminal = std::io::stdout().is_terminal();
    let mut lines = Lines::default();
    while let Some((status, recent)) = poll(&mut conn) {
        let text = if terminal { screen(&status, &recent) } else { lines.next(&status, &recent) };
        let mut out = std::io::stdout().lock();
        // A reader that went away (`| head`) ends the watch.
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        std::thread::sleep(interval);
    }
    eprintln!("mcli-server: the server `{}` stopped", server.name);
    Ok(ExitCode::FAILURE)
}

/// The status and the latest results (none when the history is off); `None` once the server
/// no longer answers.
fn poll(conn: &mut Connection) -> Option<(StatusResult, Vec<HistoryEntry>)> {
    let status = conn.call::<protocol::Status>(&NoParams {}).ok()?;
    let params = HistoryParams { limit: Some(RECENT), ..HistoryParams::default() };
    let recent = conn.call::<protocol::History>(&params).map(|h| h.entries).unwrap_or_default();
    Some((status, recent))
}

/// One frame for a terminal: the cursor home, each line cleared to its end, the rest of the
/// screen cleared below, so nothing flickers and nothing of a longer frame stays.
fn screen(status: &StatusResult, recent: &[HistoryEntry]) -> String {
    let mut lines = vec![
        format!(
            "mcli-server {} (pid {}), up {}: {} running, {} queued, {} executed, {} failed",
            status.version,
            status.pid,
            humantime::format_duration(Duration::from_secs(status.uptime_secs)),
            status.active_commands.len(),
            status.queued,
            status.executed_total,
            status.failed_total
        ),
        String::new(),
        "RUNNING".to_owned(),
    ];
    for active in &status.active_commands {
        lines.push(format!("  #{:<6} {:<24} {}", active.id, active.command, elapsed(&active.started)));
    }
    if status.active_commands.is_empty() {
        lines.push("  (none)".to_owned());
    }
    for w in &status.workers {
        lines.push(format!("  worker pid {} {} ({}, {} calls)", w.pid, w.command, w.state, w.calls));
    }
    lines.push(String::new());
    lines.push("RECENT".to_owned());
    for entry in recent {
        lines.push(format!("  {}", result_line(entry)));
    }
    let mut frame = String::from("\x1b[H");
    for line in lines {
        frame += &line;
        frame += "\x1b[K\n";
    }
    frame + "\x1b[J"
}

/// One result: id, command, how it ended, how long it took.
fn result_line(entry: &HistoryEntry) -> String {
    let ended = match (entry.exit_code, entry.signal) {
        (Some(code), _) => format!("{} (exit {code})", entry.status),
        (None, Some(signal)) => format!("{} (signal {signal})", entry.status),
        (None, None) => entry.status.clone(),
    };
    let cached = if entry.cached { ", cached" } else { "" };
    format!("#{:<6} {:<24} {ended} in {} ms{cached}", entry.id, entry.command, entry.duration_ms)
}

/// How long ago `started` (RFC 3339) was, in whole seconds.
fn elapsed(started: &str) -> String {
    let since = humantime::parse_rfc3339(started).ok().and_then(|t| SystemTime::now().duration_since(t).ok());
    since.map_or_else(String::new, |d| format!("{}s", d.as_secs()))
}

/// What the plain-lines view has already said, so that each event is printed once.
#[derive(Default)]
struct Lines {
    started: BTreeSet<u64>,
    last_result: Option<u64>,
    queued: Option<u64>,
}

impl Lines {
    /// The lines of what happened since the last call: first a summary, then each command that
    /// started, each result, and each change of the queue.
    fn next(&mut self, status: &StatusResult, recent: &[HistoryEntry]) -> String {
        let mut out = String::new();
        if self.queued.is_none() {
            out += &format!(
                "mcli-server {} (pid {}): {} running, {} queued\n",
                status.version,
                status.pid,
                status.active_commands.len(),
                status.queued
            );
            // Results from before the watch are history, not news.
            self.last_result = recent.iter().map(|e| e.id).max();
        }
        for active in &status.active_commands {
            if self.started.insert(active.id) {
                out += &format!("started #{} {}\n", active.id, active.command);
            }
        }
        let running: BTreeSet<u64> = status.active_commands.iter().map(|a| a.id).collect();
        self.started.retain(|id| running.contains(id));
        let last = self.last_result.unwrap_or(0);
        for entry in recent.iter().rev().filter(|e| e.id > last) {
            out += &format!("ended {}\n", result_line(entry));
            self.last_result = Some(entry.id);
        }
        if self.queued.is_some_and(|q| q != status.queued) {
            out += &format!("queued {}\n", status.queued);
        }
        self.queued = Some(status.queued);
        out
    }
}
