//! `mcli-server commands`: the commands the running server can run, or, with none running,
//! those the config's directories hold. `--names` prints the names alone, quickly, for the
//! shell completions.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use mcli_protocol::{self as protocol, NoParams};
use mcli_shared::paths::{self, ServerPaths};
use mcli_shared::registry::Registry;

use super::common;

/// How long `--names` waits for the running server before it reads the commands dirs itself: a
/// completion must come back at once, even from a server that is stuck.
const NAMES_WAIT: Duration = Duration::from_millis(300);

/// Prints the command names, one per line: the running server's, else those of the commands
/// dirs. It says nothing on failure (the shell would print it over the command line).
pub(super) fn names(server: &ServerPaths, file: Option<&Path>) -> ExitCode {
    let asked = common::connect(server).ok().flatten().and_then(|conn| {
        conn.set_read_timeout(Some(NAMES_WAIT)).ok()?;
        let mut conn = conn;
        conn.call::<protocol::List>(&NoParams {}).ok()
    });
    let list = match asked {
        Some(result) => result.commands,
        None => match mcli_shared::config::load_all(file, paths::process_env) {
            Ok(loaded) => Registry::scan(&loaded.config.commands_dirs(paths::process_env)).list(),
            Err(_) => return ExitCode::FAILURE,
        },
    };
    let mut out = String::new();
    for command in list.iter().filter(|c| c.error.is_none()) {
        out.push_str(&command.name);
        out.push('\n');
    }
    print!("{out}");
    ExitCode::SUCCESS
}

pub(super) fn run(server: &ServerPaths, file: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let list = match common::connect(server)? {
        Some(mut conn) => conn.call::<protocol::List>(&NoParams {})?.commands,
        None => {
            let config = common::load_config(file, false)?;
            Registry::scan(&config.commands_dirs(paths::process_env)).list()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&protocol::ListResult { commands: list })?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = list.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for command in &list {
        match &command.error {
            None if command.worker => {
                println!("{:width$}  {}  [{}, warm worker]", command.name, command.description, command.source)
            }
            None => println!("{:width$}  {}  [{}]", command.name, command.description, command.source),
            Some(error) => println!("{:width$}  BROKEN: {error}", command.name),
        }
    }
    Ok(ExitCode::SUCCESS)
}
