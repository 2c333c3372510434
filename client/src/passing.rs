//! Handing the client's own stdin, stdout and stderr to the server with an `execute` (over the
//! local socket, `SCM_RIGHTS`, as Mercurial's chg does), so that the command reads and writes
//! them itself: it sees the terminal, `cmd > file` writes the file directly, `| head -1` ends it
//! with SIGPIPE, and output costs the server nothing.

use std::io;
use std::os::fd::AsFd;

use crate::args::Cli;
use crate::target::Target;

/// Whether this call passes the client's streams: over the local socket, when the output is
/// not wanted by the client itself (`--json`), unless `--no-pass-streams` or
/// `MCLI_PASS_STREAMS=0` says to stream them through the server, and only when all three are
/// open.
pub fn passes_streams(target: &Target, cli: &Cli) -> bool {
    matches!(target, Target::Socket(_))
        && !cli.json
        && !cli.no_pass_streams
        && !switched_off(std::env::var("MCLI_PASS_STREAMS").ok().as_deref())
        && all_open()
}

fn switched_off(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
}

/// Whether stdin, stdout and stderr are open descriptors (a closed one cannot be passed).
fn all_open() -> bool {
    let open = |fd: std::os::fd::BorrowedFd<'_>| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok();
    open(io::stdin().as_fd()) && open(io::stdout().as_fd()) && open(io::stderr().as_fd())
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
