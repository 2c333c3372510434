//! `mcli-server restart`: stop the running server, if any, and start a new one in the
//! background, listening where the old one did unless told otherwise.

use std::path::Path;
use std::process::ExitCode;

use mcli_protocol::{NoParams, Status};
use mcli_shared::paths::ServerPaths;

use super::common;
use super::start::{self, Listen};
use super::stop;

pub(super) fn run(server: &ServerPaths, file: Option<&Path>, listen: &Listen) -> anyhow::Result<ExitCode> {
    let listen = as_it_ran(server, file, listen)?;
    stop::stop(server)?;
    start::detached(server, file, &listen)
}

/// `listen`, completed with the listeners the running server has (its TCP address, and its HTTP
/// bridge unless the config opens that one anyway): a restart keeps what `start --tcp` and
/// `--http` asked for. Options given to `restart` win.
fn as_it_ran(server: &ServerPaths, file: Option<&Path>, listen: &Listen) -> anyhow::Result<Listen> {
    let mut listen = listen.clone();
    let Some(mut conn) = common::connect(server)? else { return Ok(listen) };
    let status = conn.call::<Status>(&NoParams {})?;
    let config_opens_http = common::load_config(file, false)?.api_daemon.enabled;
    let mut kept = Vec::new();
    if listen.tcp.is_none()
        && let Some(tcp) = status.tcp
    {
        kept.push(format!("--tcp {tcp}"));
        listen.tcp = Some(tcp);
    }
    if listen.http.is_none()
        && !config_opens_http
        && let Some(http) = status.http
    {
        kept.push(format!("--http {http}"));
        listen.http = Some(http);
    }
    if !kept.is_empty() {
        println!("mcli-server: restarting with {}, as the server ran", kept.join(" "));
    }
    Ok(listen)
}
