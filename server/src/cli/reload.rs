//! `mcli-server reload`: make the running server read its config again, as SIGHUP does, and
//! say what changed; a config with errors is refused whole and every error is printed.

use std::path::Path;
use std::process::ExitCode;

use mcli_client::connection::CallError;
use mcli_protocol::{NoParams, Reload, ReloadResult, code};
use mcli_shared::paths::ServerPaths;

use super::common;

pub(super) fn run(server: &ServerPaths, config: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(file) = config {
        eprintln!(
            "mcli-server: reload reads the config file the server was started with, not {}; to use another file, run `mcli-server restart --config {}`",
            file.display(),
            file.display()
        );
        return Ok(ExitCode::from(2));
    }
    let Some(mut conn) = common::connect(server)? else {
        return Ok(super::fail(json, &common::not_running(server)));
    };
    match conn.call::<Reload>(&NoParams {}) {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report));
            }
            for warning in &report.warnings {
                eprintln!("mcli-server: warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(CallError::Rpc(err)) if err.code == code::CONFIG_INVALID => {
            if json {
                println!("{}", serde_json::json!({ "error": { "code": err.code, "message": err.message } }));
            }
            eprintln!("mcli-server: {}", err.message);
            Ok(ExitCode::FAILURE)
        }
        Err(err) => Err(err.into()),
    }
}

fn render(report: &ReloadResult) -> String {
    let file = report.file.as_deref().unwrap_or("no config file (the defaults)");
    let mut out = format!("mcli-server: reloaded {file}\n");
    if report.applied.is_empty() && report.needs_restart.is_empty() {
        out += "nothing changed\n";
    }
    if !report.applied.is_empty() {
        out += &format!("in force now: {}\n", report.applied.join(", "));
    }
    if !report.needs_restart.is_empty() {
        out += &format!(
            "unchanged until `mcli-server restart`: {} (these cannot change while the server runs)\n",
            report.needs_restart.join(", ")
        );
    }
    out
}
