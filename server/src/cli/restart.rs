//! `mcli-server restart`: start a new server in place of the running one, listening where the
//! old one did unless told otherwise. The old server hands its listeners to the new one
//! (`handover`), so no client call fails meanwhile; it finishes its running commands and exits.
//! With no server running, it is a `start`; an old server without `handover` is stopped first.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use mcli_client::connection::CallError;
use mcli_protocol::{Handover, HandoverParams, NoParams, Status, StatusResult, code};
use mcli_shared::paths::ServerPaths;

use super::common;
use super::start::{self, Listen};
use super::stop;

pub(super) fn run(server: &ServerPaths, file: Option<&Path>, listen: &Listen) -> anyhow::Result<ExitCode> {
    let Some(mut conn) = common::connect(server)? else { return start::detached(server, file, listen) };
    let status = conn.call::<Status>(&NoParams {})?;
    let successor = successor(file, listen, &status)?;
    match conn.call::<Handover>(&successor) {
        Ok(new) => {
            println!("{}", new.line);
            if new.running > 0 {
                let commands = if new.running == 1 { "command" } else { "commands" };
                println!(
                    "mcli-server: the previous server (pid {}) finishes its {} running {commands}, then exits",
                    status.pid, new.running
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(CallError::Rpc(err)) if err.code == code::METHOD_NOT_FOUND => {
            // A server of a release before the hand-over: stop it, then start anew.
            drop(conn);
            let listen = as_it_ran(file, listen, &status)?.0;
            stop::stop(server)?;
            start::detached(server, file, &listen)
        }
        Err(CallError::Rpc(err)) => anyhow::bail!("{}", err.message),
        Err(err) => Err(err.into()),
    }
}

/// What the running server starts in its place: this executable, with the config and flags
/// given here, and the listeners it has unless options given here ask for other addresses.
fn successor(file: Option<&Path>, listen: &Listen, status: &StatusResult) -> anyhow::Result<HandoverParams> {
    let program = std::env::current_exe().context("cannot find this executable")?;
    let mut args = Vec::new();
    if let Some(file) = file {
        args.extend(["--config".to_owned(), std::path::absolute(file)?.display().to_string()]);
    }
    if listen.debug {
        args.push("--debug".to_owned());
    }
    if listen.log_format == crate::logging::Format::Json {
        args.extend(["--log-format".to_owned(), "json".to_owned()]);
    }
    let mut handed = Vec::new();
    let (_, kept) = as_it_ran(file, listen, status)?;
    match (&listen.tcp, &status.tcp) {
        (Some(asked), Some(had)) if asked != had => args.extend(["--tcp".to_owned(), asked.clone()]),
        (Some(asked), None) => args.extend(["--tcp".to_owned(), asked.clone()]),
        _ => handed.push("tcp".to_owned()),
    }
    match (&listen.http, &status.http) {
        (Some(asked), Some(had)) if asked != had && !asked.is_empty() => args.push(format!("--http={asked}")),
        (Some(asked), None) => args.push(format!("--http={asked}")),
        _ => handed.push("http".to_owned()),
    }
    if !kept.is_empty() {
        println!("mcli-server: restarting with {}, as the server ran", kept.join(" "));
    }
    Ok(HandoverParams { program: program.display().to_string(), args, listeners: Some(handed) })
}

/// `listen`, completed with the listeners the running server has (its TCP address, and its HTTP
/// bridge unless the config opens that one anyway), and what was kept, for the user: a restart
/// keeps what `start --tcp` and `--http` asked for. Options given to `restart` win.
fn as_it_ran(file: Option<&Path>, listen: &Listen, status: &StatusResult) -> anyhow::Result<(Listen, Vec<String>)> {
    let mut listen = listen.clone();
    let config_opens_http = common::load_config(file, false)?.api_daemon.enabled;
    let mut kept = Vec::new();
    if listen.tcp.is_none()
        && let Some(tcp) = &status.tcp
    {
        kept.push(format!("--tcp {tcp}"));
        listen.tcp = Some(tcp.clone());
    }
    if listen.http.is_none()
        && !config_opens_http
        && let Some(http) = &status.http
    {
        kept.push(format!("--http {http}"));
        listen.http = Some(http.clone());
    }
    Ok((listen, kept))
}
