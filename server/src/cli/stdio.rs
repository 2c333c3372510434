//! `mcli-server --stdio`: serve one JSON-RPC session on standard input and output, as an editor
//! spawns it.

use std::path::Path;
use std::process::ExitCode;

use mcli_shared::paths::ServerPaths;

use super::common;

pub(super) fn run(server: &ServerPaths, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    // Commands must not inherit what the editor left open (see `start::foreground`).
    let closed = mcli_client::autostart::close_inherited_descriptors();
    let config = common::load_config(file, false)?;
    // Standard output carries the protocol: logs go to standard error only.
    crate::logging::init(config.api_daemon.debug, None);
    if let Err(err) = closed {
        tracing::warn!("cannot close the descriptors inherited from the editor: {err}");
    }
    let runtime = common::runtime()?;
    runtime.block_on(crate::serve_stdio(config, server.clone()))?;
    // The read of standard input cannot be cancelled: after a `shutdown`, do not wait for it.
    runtime.shutdown_background();
    Ok(ExitCode::SUCCESS)
}
