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
pub mod registry;
pub mod runner;
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

/// The running program's name, for message prefixes (`mcli` until one is set).
pub fn program_name() -> &'static str {
    PROGRAM.get().copied().unwrap_or("mcli")
}
