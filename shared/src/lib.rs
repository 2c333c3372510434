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
