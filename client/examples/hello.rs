//! Runs `hello` through the mcli server (starting one when none runs) and prints what it says:
//! `cargo run --example hello -- Ada`.

use mcli_client::{Client, Command};

fn main() -> Result<(), mcli_client::Error> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "World".to_owned());
    let mut client = Client::connect_or_start("server")?;
    let output = client.execute(Command::new("hello").arg(name))?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    let status = client.status()?;
    eprintln!("execution {} on server pid {} ({} commands run)", output.id, status.pid, status.executed_total);
    std::process::exit(output.exit_status());
}
