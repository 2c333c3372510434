//! `mcli-server restart`: stop the running server, if any, and start a new one in the
//! background.

use std::path::Path;
use std::process::ExitCode;

use mcli_shared::paths::ServerPaths;

use super::start::{self, Listen};
use super::stop;

pub(super) fn run(server: &ServerPaths, file: Option<&Path>, listen: &Listen) -> anyhow::Result<ExitCode> {
    stop::stop(server)?;
    start::detached(server, file, listen)
}
