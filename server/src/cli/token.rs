//! `mcli-server token`: print the running server's token, for HTTP and TCP clients.

use std::process::ExitCode;

use anyhow::Context as _;
use mcli_protocol::ServerFile;
use mcli_shared::paths::{self, ServerPaths};

use super::common;

pub(super) fn run(server: &ServerPaths) -> anyhow::Result<ExitCode> {
    paths::check_runtime_dir(&server.dir)?;
    if common::connect(server)?.is_none() {
        eprintln!("mcli-server: {}", common::not_running(server));
        return Ok(ExitCode::FAILURE);
    }
    let text = paths::read_server_file(&server.server_file)
        .with_context(|| format!("cannot read the server file {}", server.server_file.display()))?;
    let file = ServerFile::parse(&text)
        .with_context(|| format!("the server file {} is not a server file", server.server_file.display()))?;
    println!("{}", file.token);
    Ok(ExitCode::SUCCESS)
}
