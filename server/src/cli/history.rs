//! `mcli-server history`: past executions, newest first, read from the history database (no
//! server needed).

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
