//! A client of another release than the running server, as after an upgrade: the server is
//! restarted (handing its socket over, so nothing is lost) when it runs nothing and the
//! `mcli-server` beside this client is of this client's release; otherwise the client says
//! plainly which releases differ and how to restart, and the call goes on.

use std::path::Path;
use std::process::{Command, Stdio};

use mcli_protocol::{Handover, HandoverParams, NoParams, Status};
use mcli_shared::paths::ServerPaths;

use crate::autostart::Starter;
use crate::connection::{ConnectError, Connection};

/// What to do about the release of the server behind `conn`. Returns the connection to use:
/// `conn` itself, or one to the server that replaced it.
pub fn match_release(server: &ServerPaths, mut conn: Connection, quiet: bool) -> Result<Connection, ConnectError> {
    let mine = mcli_shared::VERSION;
    // The server file was read to connect: no second read on the round trip.
    if conn.server_release().is_none_or(|theirs| theirs == mine) {
        return Ok(conn);
    }
    let Ok(status) = conn.call::<Status>(&NoParams {}) else { return Ok(conn) };
    let busy = status.active_commands.len() + usize::try_from(status.queued).unwrap_or(usize::MAX);
    let theirs = &status.version;
    let program = Starter::from_env(server).program;
    let beside = release_of(&program);
    let say = |text: String| {
        if !quiet {
            eprintln!("mcli-client: {text}");
        }
    };
    if busy > 0 || beside.as_deref() != Some(mine) {
        let why = if busy > 0 {
            let commands = if busy == 1 { "command" } else { "commands" };
            format!("it runs {busy} {commands}; restart it with `mcli-server restart` once they have finished")
        } else {
            let found = beside.map_or_else(|| "cannot be run".to_owned(), |v| format!("is mcli {v}"));
            format!(
                "the mcli-server it would restart with ({}) {found}; install both from one release",
                program.display()
            )
        };
        say(format!("this client is mcli {mine}, the running server (pid {}) is mcli {theirs}; {why}", status.pid));
        return Ok(conn);
    }
    let params = HandoverParams { program: program.display().to_string(), args: Vec::new(), listeners: None };
    match conn.call::<Handover>(&params) {
        Ok(new) => {
            say(format!("restarted mcli-server (mcli {theirs}, pid {}) as mcli {mine} (pid {})", status.pid, new.pid));
            drop(conn);
            Connection::connect_server(server)
        }
        Err(err) => {
            say(format!(
                "this client is mcli {mine}, the running server (pid {}) is mcli {theirs}, and restarting it failed: {err}; run `mcli-server restart`",
                status.pid
            ));
            Ok(conn)
        }
    }
}

/// The release `program --version` reports (`mcli-server 0.1.0 ...`), if it runs.
fn release_of(program: &Path) -> Option<String> {
    let out = Command::new(program).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().nth(1).map(str::to_owned)
}
