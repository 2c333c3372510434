//! The flags and arguments of `mcli-client`, and their `--help` text.

use clap::Parser;
use mcli_protocol::Seconds;
use mcli_shared::paths;

#[derive(Debug, Parser)]
#[command(
    name = "mcli-client",
    version = env!("MCLI_LONG_VERSION"),
    about = "Run a command through the mcli server and exit with its status",
    after_help = "Options after COMMAND belong to COMMAND.\n\
                  Exit status: the command's own; 128+N when signal N ended it; 124 timed out; \
                  130 interrupted (or a job interrupted by its server's end); 127 unknown command; 66 no job with that id \
                  (--attach, --wait: it never existed, or its output was pruned); 126 the command's manifest is broken; \
                  75 the server is busy; 69 no server and none could be started; 141 standard output \
                  was closed; 2 usage error; 1 any other error of the client."
)]
/// The parsed command line of `mcli-client`.
pub struct Cli {
    /// When no server answers: empty starts one, `local` runs the command in this process,
    /// anything else is a program run with COMMAND and ARGS
    #[arg(short = 'a', long = "alternate-editor", env = "MCLI_ALTERNATE_EDITOR", value_name = "PROGRAM")]
    pub alternate_editor: Option<String>,
    /// Talk to the server with this name
    #[arg(short = 's', long = "socket-name", env = "MCLI_SOCKET_NAME", value_name = "NAME", default_value = paths::DEFAULT_SERVER_NAME)]
    pub socket_name: String,
    /// End the command after SECONDS (0: no limit, not even the configured one)
    #[arg(short = 't', long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,
    /// Run the command even if a cached result exists
    #[arg(long)]
    pub no_cache: bool,
    /// Print the result object as JSON (output captured, not streamed)
    #[arg(long)]
    pub json: bool,
    /// Stream the command's input and output through the server instead of handing it this
    /// process's stdin, stdout and stderr (also MCLI_PASS_STREAMS=0)
    #[arg(long)]
    pub no_pass_streams: bool,
    /// Run the command on a pseudo-terminal on the server, of this terminal's size, with this
    /// terminal in raw mode (for servers reached over TCP, where the terminal cannot be passed)
    #[arg(long, conflicts_with_all = ["json", "stdio"])]
    pub tty: bool,
    /// Say nothing of the client's own doings (such as starting the server)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Reach the server through the TCP address and token of this server file (`NAME.json`)
    #[arg(short = 'f', long = "server-file", value_name = "FILE")]
    pub server_file: Option<std::path::PathBuf>,
    /// Bridge standard input and output to the server (for editors), instead of running a command
    #[arg(long, conflicts_with_all = ["command", "json", "timeout", "no_cache", "no_pass_streams"])]
    pub stdio: bool,
    /// Start COMMAND as a detached job on the server: print its id and exit 0 at once
    #[arg(short = 'd', long, conflicts_with_all = ["json", "stdio"])]
    pub detach: bool,
    /// Follow the jobs with these ids (output so far, then live) and exit with the worst status;
    /// Ctrl-C detaches and leaves them running
    #[arg(long, value_name = "ID", num_args = 1.., conflicts_with_all = ["command", "detach", "wait", "stdio", "json"])]
    pub attach: Vec<u64>,
    /// With --attach: Ctrl-C cancels the jobs instead of detaching
    #[arg(long)]
    pub cancel_on_interrupt: bool,
    /// Wait for the jobs with these ids to end and exit with the worst status
    #[arg(long, value_name = "ID", num_args = 1.., conflicts_with_all = ["command", "detach", "stdio", "json"])]
    pub wait: Vec<u64>,
    /// With --wait: return when the first of them ends
    #[arg(long)]
    pub any: bool,
    /// What Ctrl-C does to a running call: `cancel` (the default) or `detach` (it runs on as a
    /// job, whose id is printed; its standard input is not passed on)
    #[arg(long, value_name = "ACTION", env = "MCLI_ON_INTERRUPT", value_parser = ["cancel", "detach"])]
    pub on_interrupt: Option<String>,
    /// The command to run, then its arguments
    #[arg(value_name = "COMMAND", required_unless_present_any = ["stdio", "attach", "wait"], trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// A timeout: a positive number of seconds, or 0 for no limit at all.
fn parse_seconds(text: &str) -> Result<f64, String> {
    if text.trim().parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    Seconds::parse_positive(text).map(Seconds::get).map_err(|_| format!("`{text}` is not a positive number of seconds"))
}
