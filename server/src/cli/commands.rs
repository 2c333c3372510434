//! `mcli-server commands`: the commands the running server can run, or, with none running,
//! those the config's directories hold.

use std::path::Path;
use std::process::ExitCode;

use mcli_protocol::{self as protocol, NoParams};
use mcli_shared::paths::{self, ServerPaths};
use mcli_shared::registry::Registry;

use super::common;

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
