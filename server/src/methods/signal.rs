//! `signal`: a signal the client's terminal sent it (a window change, Ctrl-Z, `fg`, quit,
//! hang-up), forwarded to the process group of the command one of this connection's `execute`
//! requests runs. Only the signals of [`FORWARDED_SIGNALS`] are accepted, and only for the
//! connection's own requests.

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{FORWARDED_SIGNALS, SignalParams, SignalResult, code};
use nix::sys::signal::Signal;

use super::error;
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

pub async fn signal(params: SignalParams, _: State, request: RequestCtx) -> Result<SignalResult, ErrorObjectOwned> {
    let signal = parse(&params.signal)?;
    let key = params.request_id.to_string();
    let Some(group) = request.terminal.group(&key) else {
        return Err(error(
            code::INVALID_PARAMS,
            format!(
                "invalid params: no `execute` request {key} runs on this connection; `signal` reaches only this connection's own running commands"
            ),
        ));
    };
    let delivered = group.signal(signal);
    tracing::debug!(request = %key, signal = %params.signal, delivered, "signal forwarded");
    Ok(SignalResult { delivered })
}

/// The signal named `name` (`WINCH` or `SIGWINCH`), if it may be forwarded.
fn parse(name: &str) -> Result<Signal, ErrorObjectOwned> {
    let short = name.strip_prefix("SIG").unwrap_or(name);
    let signal = match short {
        "INT" => Signal::SIGINT,
        "QUIT" => Signal::SIGQUIT,
        "HUP" => Signal::SIGHUP,
        "TERM" => Signal::SIGTERM,
        "TSTP" => Signal::SIGTSTP,
        "CONT" => Signal::SIGCONT,
        "WINCH" => Signal::SIGWINCH,
        _ => {
            return Err(error(
                code::INVALID_PARAMS,
                format!(
                    "invalid params: signal `{name}` may not be forwarded; one of {}",
                    FORWARDED_SIGNALS.join(", ")
                ),
            ));
        }
    };
    Ok(signal)
}
