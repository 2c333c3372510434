//! `mcli-server history`: past executions, read from the history database (no server needed):
//! as a table, the newest at the bottom (as a shell's `history`); as JSON, newest first.

use std::process::ExitCode;

use mcli_protocol::{self as protocol, HistoryParams};
use mcli_shared::paths::{self, ServerPaths};

pub(super) fn run(server: &ServerPaths, filter: HistoryParams, json: bool) -> anyhow::Result<ExitCode> {
    let path = crate::history::path(&paths::state_dir(paths::process_env), &server.name);
    let entries = crate::history::query(&path, &filter)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&protocol::HistoryResult { entries })?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no executions recorded in {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:20}  {:>9}  {:11}  {:>4}  {:6}  {:8}  COMMAND",
        "ID", "STARTED", "DURATION", "STATUS", "EXIT", "CACHED", "DETACHED"
    );
    for e in entries.iter().rev() {
        let exit = match (e.exit_code, e.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => format!("sig{signal}"),
            (None, None) => "-".to_owned(),
        };
        let cached = if e.cached { "yes" } else { "" };
        let detached = if e.detached { "yes" } else { "" };
        let mut line = e.command.clone();
        for arg in &e.args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        println!(
            "{:>6}  {:20}  {:>7}ms  {:11}  {:>4}  {cached:6}  {detached:8}  {line}",
            e.id, e.started, e.duration_ms, e.status, exit
        );
    }
    if entries.iter().any(|e| e.cached) {
        println!("CACHED yes: the result came from the result cache; the command did not run again");
    }
    Ok(ExitCode::SUCCESS)
}

/// Quotes an argument for display when it would not read back as one word.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', "'\\''")) }
}
