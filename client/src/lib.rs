//! `mcli-client` as a library: run commands through an mcli server from a Rust program.
//!
//! ```no_run
//! use mcli_client::{Client, Command};
//!
//! # fn main() -> Result<(), mcli_client::Error> {
//! // The default server (`$MCLI_SOCKET_NAME`, else `server`), started when none runs.
//! let mut client = Client::connect_or_start("server")?;
//! let output = client.execute(Command::new("hello").arg("World").arg("--verbose"))?;
//! assert!(output.success());
//! print!("{}", String::from_utf8_lossy(&output.stdout)); // Hello World! (verbose mode)
//!
//! // Output as it comes, for long commands.
//! let done = client.execute_streaming(Command::new("echo").arg("streamed"), |stream, data| {
//!     eprintln!("{stream:?}: {} bytes", data.len());
//! })?;
//! std::process::exit(done.exit_status());
//! # }
//! ```
//!
//! - [`Client`]: `connect`, `connect_default`, `connect_or_start`; `execute`, `execute_streaming`,
//!   `status`, `list`, `history`, `cancel`. Errors are one enum, [`Error`].
//! - [`Command`]: a command with its arguments, directory, environment, input and timeout.
//! - [`route`]: run a subcommand of your program through the daemon when routing is on, else
//!   locally (the Rust twin of the original daemon's `@daemon_command`); see
//!   `examples/routed.rs`.
//!
//! The lower layers are public too: a blocking connection that speaks the protocol with its
//! typed methods ([`connection`]), finding or starting a server race-free ([`autostart`]), and
//! the `mcli-client` command line ([`cli`]). `mcli-server`'s own subcommands use them.

#![warn(missing_docs)]

pub mod args;
pub mod autostart;
mod bridge;
pub mod cli;
mod client;
pub mod connection;
pub mod error;
pub mod exit;
mod forward;
mod jobs;
mod local;
mod passing;
mod remote;
mod route;
mod stdin;
mod target;
mod tty;
mod upgrade;

pub use client::{Client, Command, Error, Output};
pub use mcli_protocol::{ExecStatus, HistoryParams, Stream};
pub use route::{route, routing_enabled};
