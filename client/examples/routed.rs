//! A clap application whose `greet` subcommand runs through the mcli daemon when routing is on
//! (`MCLI_DAEMON_ROUTING=true`, or `[api_daemon] enabled = true`), and in the program itself
//! otherwise or when no daemon can be reached: `cargo run --example routed -- greet Ada`.
//!
//! The daemon runs its own command of that name; here the built-in `hello` stands in for it.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "routed", about = "An example of routing a subcommand to the mcli daemon")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Greet someone, through the daemon when routing is on
    Greet {
        name: String,
        #[arg(long)]
        verbose: bool,
    },
}

fn main() {
    let Cmd::Greet { name, verbose } = Cli::parse().command;
    let mut args = vec![name.clone()];
    if verbose {
        args.push("--verbose".to_owned());
    }
    let status = mcli_client::route("hello", &args, || {
        println!("Hello {name}! (run locally{})", if verbose { ", verbose" } else { "" });
        0
    });
    std::process::exit(status);
}
