//! `mcli-shared` holds everything both ends of mcli need: the JSON-RPC protocol types, the wire
//! framing, the config file, the per-user paths and their safety checks, the command registry and
//! the process runner. The client runs commands itself under `--alternate-editor=local`, so the
//! registry and the runner live here rather than in the server.

pub mod config;
pub mod framing;
pub mod lockfile;
pub mod manifest;
pub mod paths;
pub mod protocol;
pub mod registry;
pub mod runner;
pub mod worker;

/// The version of this build, shared by both binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
