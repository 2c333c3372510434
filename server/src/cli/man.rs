//! `mcli-server man [--client]`: the man page of `mcli-server` (or of `mcli-client`) as roff,
//! from the clap definitions by clap_mangen, with the EXIT STATUS, ENVIRONMENT and FILES
//! sections written here (the reference for them is docs/cli.md and docs/files.md).

use std::io::Write as _;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_mangen::Man;

use super::Cli;

/// Prints the man page (section 1) of `mcli-server`, or of `mcli-client` with `client`.
pub(super) fn run(client: bool) -> anyhow::Result<ExitCode> {
    let page =
        if client { page(mcli_client::args::Cli::command(), CLIENT_EXIT) } else { page(Cli::command(), SERVER_EXIT) };
    std::io::stdout().write_all(&page?)?;
    Ok(ExitCode::SUCCESS)
}

/// The page: clap's sections, then ours, then the version. The client's after-help (a short
/// form of its exit statuses) is left out, since EXIT STATUS says it in full.
fn page(command: clap::Command, exit: &str) -> std::io::Result<Vec<u8>> {
    let has_subcommands = command.has_subcommands();
    let man_command = &command.clone();
    let man = Man::new(command);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if has_subcommands {
        out.extend_from_slice(subcommands(man_command).as_bytes());
    }
    out.extend_from_slice(exit.as_bytes());
    out.extend_from_slice(ENVIRONMENT.as_bytes());
    out.extend_from_slice(FILES.as_bytes());
    out.extend_from_slice(SEE_ALSO.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// The SUBCOMMANDS section: each subcommand (nested ones as `config check`) with its help and
/// its arguments, on this one page (clap_mangen would point at a page per subcommand).
fn subcommands(command: &clap::Command) -> String {
    let mut out = String::from(".SH SUBCOMMANDS\n");
    let mut stack: Vec<(String, &clap::Command)> =
        command.get_subcommands().map(|c| (c.get_name().to_owned(), c)).collect();
    stack.reverse();
    while let Some((path, sub)) = stack.pop() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        if sub.has_subcommands() {
            let mut nested: Vec<_> = sub.get_subcommands().map(|c| (format!("{path} {}", c.get_name()), c)).collect();
            nested.reverse();
            stack.extend(nested);
            continue;
        }
        out += &format!(
            ".TP\n.B {}\n{}\n",
            escape(&path),
            escape(&sub.get_about().map(ToString::to_string).unwrap_or_default())
        );
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help") {
            out += &format!(
                ".br\n\\fB{}\\fR: {}\n",
                escape(&arg_form(arg)),
                escape(&arg.get_help().map(ToString::to_string).unwrap_or_default())
            );
        }
    }
    out
}

/// How an argument is written: `--long VALUE`, or `VALUE` for a positional one.
fn arg_form(arg: &clap::Arg) -> String {
    let value = arg.get_value_names().and_then(|v| v.first()).map(ToString::to_string);
    match (arg.get_long(), value) {
        (Some(long), Some(value)) if arg.get_action().takes_values() => format!("--{long} {value}"),
        (Some(long), _) => format!("--{long}"),
        (None, Some(value)) => value,
        (None, None) => arg.get_id().to_string().to_uppercase(),
    }
}

/// Text made safe for roff: backslashes and hyphens escaped, no line that starts a request.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    let text = text.replace('\n', " ");
    if text.starts_with('.') || text.starts_with('\'') { format!("\\&{text}") } else { text }
}

const CLIENT_EXIT: &str = r#".SH "EXIT STATUS"
The command's own status when it ran and exited, else:
.TP
.B 128+N
signal N ended the command
.TP
.B 1
the command ended without a status, the server answered with another error, or the client failed
.TP
.B 2
usage error
.TP
.B 69
no server, and none could be started; also an unsafe runtime dir, an invalid server name, another protocol revision
.TP
.B 75
the server is busy (its running and queued limits are reached, or its connection limit)
.TP
.B 124
the command timed out
.TP
.B 126
the command's manifest is broken, or its program cannot be executed
.TP
.B 127
unknown command, or a manifest whose program is not found
.TP
.B 130
interrupted: Ctrl\-C cancelled the command
.TP
.B 141
the reader of standard output went away
"#;

const SERVER_EXIT: &str = r#".SH "EXIT STATUS"
.TP
.B 0
success
.TP
.B 1
an error, with a message on standard error that starts with \fBmcli\-server:\fR (an invalid config, an unsafe runtime dir, an address that cannot be bound, no server for \fBstatus\fR or \fBtoken\fR, a problem that \fBdoctor\fR found)
.TP
.B 2
usage error
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
.B MCLI_SOCKET_NAME
the server name, as \fB\-s\fR (default \fBserver\fR)
.TP
.B MCLI_ALTERNATE_EDITOR
the client's \fB\-a\fR: what to do when no server answers
.TP
.B MCLI_DAEMON_ROUTING
\fB0\fR, \fBfalse\fR, \fBno\fR or \fBoff\fR: the client always runs commands in its own process
.TP
.B MCLI_START_TIMEOUT
seconds to wait for a new server's readiness (default 20)
.TP
.B MCLI_RUNTIME_DIR
the runtime dir (default \fB$XDG_RUNTIME_DIR/mcli\fR, else \fB/tmp/mcli\-$UID\fR)
.TP
.B MCLI_CONFIG
the config file, when \fB\-\-config\fR is not given
.TP
.B XDG_CONFIG_HOME
\fB$XDG_CONFIG_HOME/mcli/\fR holds \fBconfig.toml\fR and \fBcommands/\fR (default \fB~/.config\fR)
.TP
.B XDG_STATE_HOME
\fB$XDG_STATE_HOME/mcli/\fR holds the history and the logs (default \fB~/.local/state\fR)
.TP
.B MCLI_API_DAEMON_ENABLED, MCLI_API_DAEMON_HOST, MCLI_API_DAEMON_PORT, MCLI_API_DAEMON_DEBUG
override the \fB[api_daemon]\fR keys of the config
.TP
.B RUST_LOG
the server's log filter: a level, or TARGET=LEVEL pairs
.TP
.B JOURNAL_STREAM
set by systemd: the server logs without timestamps, which the journal adds
"#;

const FILES: &str = r#".SH FILES
.TP
.B RUNTIME/NAME.sock
the socket of the server named NAME (mode 0600, in a runtime dir of mode 0700)
.TP
.B RUNTIME/NAME.json
the server file: pid, version, addresses and token
.TP
.B RUNTIME/NAME.lock, RUNTIME/NAME.start.lock
held by the running server, and by whoever starts one
.TP
.B ~/.config/mcli/config.toml
the config file (optional)
.TP
.B ~/.config/mcli/commands/
scripts and manifests, the first commands dir; \fB[server] commands_dirs\fR adds more
.TP
.B ~/.local/state/mcli/NAME\-history.sqlite3
the command history
.TP
.B ~/.local/state/mcli/NAME.log, NAME.log.1
the log of a server running in the background
"#;

const SEE_ALSO: &str = r#".SH "SEE ALSO"
\fBmcli\-client\fR(1), \fBmcli\-server\fR(1); the docs/ folder of the mcli sources (cli.md, files.md, config.md)
"#;
