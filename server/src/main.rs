//! The `mcli-server` binary: parses the command line and hands it to the library's
//! [`mcli_server::cli`], which runs the subcommand.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use mcli_server::cli::{self, Cli};

fn main() -> ExitCode {
    cli::main(Cli::parse())
}
