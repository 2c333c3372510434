//! `mcli-client` as a library: a blocking connection to the server ([`connection`]), finding or
//! starting a server race-free ([`autostart`]), and the command line ([`cli`]). `mcli-server`'s
//! own subcommands (`start`, `stop`, `status`, ...) use the same pieces.

pub mod args;
pub mod autostart;
mod bridge;
pub mod cli;
pub mod connection;
pub mod error;
pub mod exit;
mod local;
mod remote;
mod stdin;
mod target;
