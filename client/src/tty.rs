//! `--tty`: the command runs on a pseudo-terminal on the server (for a server reached over TCP,
//! where this terminal cannot be passed). This terminal goes into raw mode for the call (every
//! key goes to the command, Ctrl-C included) and is restored on every way out; what is typed is
//! streamed as `mcli/stdin`, the window size goes with the request and its changes as
//! `mcli/resize`.

use std::io;
use std::os::fd::AsFd;

use mcli_protocol::{ExecuteParams, ExecuteResult, OutputParams};
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcsetattr};

use crate::connection::{CallError, Connection};
use crate::stdin::pump_stdin;

/// Whether standard input is a terminal.
pub fn stdin_is_terminal() -> bool {
    rustix::termios::isatty(io::stdin().as_fd())
}

/// The terminal in raw mode until dropped, which restores it as it was.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> io::Result<RawMode> {
        let stdin = io::stdin();
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Flush, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin().as_fd(), OptionalActions::Flush, &self.0);
    }
}

/// Runs the command of `params` on a terminal on the server, this terminal in raw mode.
pub fn execute(
    conn: &mut Connection,
    params: &ExecuteParams,
    on_output: impl FnMut(&OutputParams) -> io::Result<()>,
) -> Result<ExecuteResult, CallError> {
    let params = ExecuteParams {
        tty: Some(crate::forward::terminal_size()),
        stdin_stream: true,
        streams: None,
        ..params.clone()
    };
    let raw = RawMode::enter()?;
    let id = conn.send_execute(&params)?;
    conn.forward_signals(id, true)?;
    let notifier = conn.notifier();
    // The pump blocks on the terminal until a key is pressed; the result ends the client all
    // the same.
    std::thread::spawn(move || pump_stdin(&notifier, id));
    let result = conn.wait_execute(id, on_output);
    drop(raw);
    result
}
