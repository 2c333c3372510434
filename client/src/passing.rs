//! Handing the client's own stdin, stdout and stderr to the server with an `execute` (over the
//! local socket, `SCM_RIGHTS`, as Mercurial's chg does), so that the command reads and writes
//! them itself: it sees the terminal, `cmd > file` writes the file directly, `| head -1` ends it
//! with SIGPIPE, and output costs the server nothing.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::args::Cli;
use crate::target::Target;

/// Whether this call passes the client's streams: over the local socket, when the output is
/// not wanted by the client itself (`--json`), unless `--no-pass-streams` or
/// `MCLI_PASS_STREAMS=0` says to stream them through the server.
pub fn passes_streams(target: &Target, cli: &Cli) -> bool {
    matches!(target, Target::Socket(_)) && !streams_stay_with_mcli(cli)
}

/// Whether the command's output must go through mcli: `--json` wants it, or
/// `--no-pass-streams` / `MCLI_PASS_STREAMS=0` asks for it (also in the local mode).
pub fn streams_stay_with_mcli(cli: &Cli) -> bool {
    cli.json || cli.no_pass_streams || switched_off(std::env::var("MCLI_PASS_STREAMS").ok().as_deref())
}

fn switched_off(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
}

/// This process's stdin, stdout and stderr, to pass; one that is closed is passed as /dev/null
/// (a descriptor cannot be passed closed), read-only for stdin, write-only for the others.
pub fn own_streams() -> io::Result<[OwnedFd; 3]> {
    let own = |fd: BorrowedFd<'_>, write: bool| match fd.try_clone_to_owned() {
        Ok(fd) => Ok(fd),
        Err(_) => std::fs::OpenOptions::new().read(!write).write(write).open("/dev/null").map(OwnedFd::from),
    };
    Ok([own(io::stdin().as_fd(), false)?, own(io::stdout().as_fd(), true)?, own(io::stderr().as_fd(), true)?])
}

#[cfg(test)]
mod tests {
    use super::switched_off;

    #[test]
    fn the_switch() {
        assert!(switched_off(Some("0")) && switched_off(Some("OFF")) && switched_off(Some("no")));
        assert!(!switched_off(None) && !switched_off(Some("1")));
    }
}
