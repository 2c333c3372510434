//! `mcli-client` as a library: a blocking connection to the server ([`connection`]), finding or
//! starting a server race-free ([`autostart`]), and the command line ([`cli`]). `mcli-server`'s
//! own subcommands (`start`, `stop`, `status`, ...) use the same pieces.

pub mod autostart;
mod bridge;
pub mod cli;
pub mod connection;
mod local;
