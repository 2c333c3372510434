//! `mcli-server status`: what the running server is doing, as text or JSON.

use std::process::ExitCode;
use std::time::Duration;

use mcli_protocol::{self as protocol, NoParams, StatusResult};
use mcli_shared::paths::ServerPaths;

use super::common;

pub(super) fn run(server: &ServerPaths, json: bool) -> anyhow::Result<ExitCode> {
    let Some(mut conn) = common::connect(server)? else {
        return Ok(super::fail(json, &common::not_running(server)));
    };
    let status = conn.call::<protocol::Status>(&NoParams {})?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(s: &StatusResult) -> String {
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
