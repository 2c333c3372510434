//! The client's standard input: whether the command gets it, and forwarding it to the server.

use std::io::{self, Read};

use mcli_protocol::{STDIN_NOTIFICATION, StdinParams, encode_output};

use crate::connection::Notifier;

/// Whether the command gets this process's standard input: when it is not a terminal, and not
/// /dev/null (which needs no forwarding: the command's input is empty either way).
pub fn stdin_is_forwarded() -> bool {
    use std::os::fd::AsFd;
    let stdin = io::stdin();
    if nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
        return false;
    }
    let Ok(stat) = nix::sys::stat::fstat(stdin.as_fd()) else { return false };
    let is_char_device = (stat.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFCHR;
    let is_dev_null =
        is_char_device && nix::sys::stat::stat("/dev/null").is_ok_and(|null| null.st_rdev == stat.st_rdev);
    !is_dev_null
}

/// Sends standard input to the server as `mcli/stdin` notifications for the request
/// `request_id`, then its end.
pub fn pump_stdin(notifier: &Notifier, request_id: u64) {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let (data, data_b64) = if n == 0 { (None, None) } else { encode_output(&buf[..n]) };
        let params = StdinParams { request_id: request_id.into(), data, data_b64, eof: n == 0 };
        if notifier.notify(STDIN_NOTIFICATION, &params).is_err() || n == 0 {
            return;
        }
    }
}
