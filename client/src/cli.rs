//! The `mcli-client` command line: run one command through the server (starting it when
//! needed), stream its output, and exit with its status; or, with `--stdio`, bridge an editor
//! to the server.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use clap::Parser;

use crate::args::Cli;
use crate::error::{ClientError, report_for};
use crate::exit;
use crate::target::Target;
use crate::{bridge, local, remote};

/// A timeout for calls that should answer at once (status, stop).
pub const QUICK_CALL: Duration = Duration::from_secs(10);

/// Runs the client with the process's arguments and returns the exit status.
pub fn main() -> i32 {
    mcli_shared::set_program_name("mcli-client");
    mcli_shared::end_quietly_on_broken_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { exit::USAGE } else { 0 };
        }
    };
    run(cli)
}

/// Runs the client with parsed arguments and returns the exit status.
pub fn run(cli: Cli) -> i32 {
    if cli.stdio {
        // The bridge connects quietly, starting a local server on demand.
        return bridge::run(|framing| Target::from_cli(&cli)?.connect(true, true, framing));
    }
    match crate::jobs::run(&cli) {
        Some(outcome) => outcome.unwrap_or_else(|err| report_for(cli.json, &err)),
        None => run_command(&cli).unwrap_or_else(|err| report_for(cli.json, &err)),
    }
}

/// What to do when no server answers.
enum Fallback {
    Start,
    Local,
    Program(String),
}

impl Fallback {
    /// The fallback that `--alternate-editor` names.
    fn of(alternate_editor: Option<&str>) -> Self {
        match alternate_editor {
            None | Some("") => Fallback::Start,
            Some("local") => Fallback::Local,
            Some(program) => Fallback::Program(program.to_owned()),
        }
    }
}

fn run_command(cli: &Cli) -> Result<i32, ClientError> {
    let (name, args) = cli.command.split_first().ok_or(ClientError::NoCommand)?;
    if routing_disabled(std::env::var_os("MCLI_DAEMON_ROUTING")) {
        return Ok(local::run(name, args, cli));
    }
    let fallback = Fallback::of(cli.alternate_editor.as_deref());
    let target = Target::from_cli(cli)?;
    let params = remote::execute_params(name, args.to_vec(), cli)?;
    match remote::run(&target, &params, matches!(fallback, Fallback::Start), cli) {
        Err(ClientError::NoServer) => match fallback {
            Fallback::Local => Ok(local::run(name, args, cli)),
            Fallback::Program(program) => Err(run_program(program, name, args)),
            Fallback::Start => Err(ClientError::NoServer),
        },
        outcome => outcome,
    }
}

fn routing_disabled(value: Option<OsString>) -> bool {
    value.is_some_and(|v| matches!(v.to_string_lossy().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
}

/// Runs the alternate program in place of this process; returns only if it cannot.
fn run_program(program: String, name: &str, args: &[String]) -> ClientError {
    let source = Command::new(&program).arg(name).args(args).exec();
    ClientError::AlternateEditor { program, source }
}
