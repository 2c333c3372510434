//! `mcli-shared` holds what both ends of mcli need beyond the wire protocol (which is
//! `mcli-protocol`): the config file, the per-user paths and their safety checks, the command
//! registry and the process runner. The client runs commands itself under
//! `--alternate-editor=local`, so the registry and the runner live here rather than in the server.

#![forbid(unsafe_code)]

pub mod builtins;
pub mod config;
pub mod execution;
pub mod lockfile;
pub mod manifest;
pub mod paths;
pub mod pty;
pub mod registry;
pub mod runner;
pub mod streams;
pub mod tree;
pub mod worker;

/// The version of this build, shared by both binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The program whose messages these are: each binary prefixes what it says with its own name
/// (`mcli-server: cannot run ...`, `mcli-client: ...`), the execution pipeline's notes in a
/// command's stderr included, so a user sees one prefix per program.
static PROGRAM: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the running program, once, at its start.
pub fn set_program_name(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// Makes a program that prints to a pipe closed early (`mcli-server history | head -1`) end as
/// a command killed by SIGPIPE does: status 141, nothing said. Rust ignores SIGPIPE, so `println!`
/// panics instead; SIGPIPE cannot simply be restored, since the same process writes to sockets
/// whose closing it handles. Other panics are reported as usual.
pub fn end_quietly_on_broken_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(128 + 13);
        }
        report(info);
    }));
}

/// The running program's name, for message prefixes (`mcli` until one is set).
pub fn program_name() -> &'static str {
    PROGRAM.get().copied().unwrap_or("mcli")
}
