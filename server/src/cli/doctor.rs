//! `mcli-server doctor [--json]`: checks what a server needs (the runtime dir, the state dir,
//! the config, the commands dirs, python3 for warm workers) and whether one runs, and says for
//! each problem what to do. Exit status 1 when a check found a problem; warnings do not fail.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mcli_protocol::{self as protocol, NoParams};
use mcli_shared::config::{self, Config};
use mcli_shared::paths::{self, ServerPaths};
use mcli_shared::registry::Registry;
use serde::Serialize;

use super::common;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warning,
    Problem,
}

/// One finding: what was checked, what was found, and (for warnings and problems) what to do.
#[derive(Debug, Serialize)]
struct Finding {
    check: &'static str,
    status: Level,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Finding { check, status: Level::Ok, message: message.into(), fix: None }
    }

    fn warning(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { check, status: Level::Warning, message: message.into(), fix: Some(fix.into()) }
    }

    fn problem(check: &'static str, message: impl Into<String>, fix: Option<String>) -> Self {
        Finding { check, status: Level::Problem, message: message.into(), fix }
    }
}

/// Runs every check, prints the findings (as text or JSON), and fails when one is a problem.
pub(super) fn run(server: &ServerPaths, file: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let mut findings = vec![runtime_dir(server), state_dir()];
    // A config with errors still has the default commands dir checked.
    let config = check_config(file, &mut findings).unwrap_or_default();
    check_commands(&config, &mut findings);
    findings.push(running(server));
    let healthy = findings.iter().all(|f| f.status != Level::Problem);
    if json {
        let report = serde_json::json!({ "ok": healthy, "checks": findings });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&findings));
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One line per finding, its fix indented under it, and a summary.
fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let tag = match f.status {
            Level::Ok => "ok     ",
            Level::Warning => "warning",
            Level::Problem => "PROBLEM",
        };
        out += &format!("{tag}  {}: {}\n", f.check, f.message);
        if let Some(fix) = &f.fix {
            out += &format!("         fix: {fix}\n");
        }
    }
    let problems = findings.iter().filter(|f| f.status == Level::Problem).count();
    out += &match problems {
        0 => "mcli-server doctor: no problem found\n".to_owned(),
        1 => "mcli-server doctor: 1 problem found\n".to_owned(),
        n => format!("mcli-server doctor: {n} problems found\n"),
    };
    out
}

fn runtime_dir(server: &ServerPaths) -> Finding {
    let dir = server.dir.display();
    match paths::check_runtime_dir(&server.dir) {
        Ok(true) => Finding::ok("runtime dir", format!("{dir} is private (mode 0700 or stricter)")),
        Ok(false) => Finding::ok("runtime dir", format!("{dir} does not exist yet; a starting server creates it")),
        // The message of a refused runtime dir already says how to fix it.
        Err(err) => Finding::problem("runtime dir", err.to_string(), None),
    }
}

fn state_dir() -> Finding {
    let dir = paths::state_dir(paths::process_env);
    let shown = dir.display();
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Finding::ok("state dir", format!("{shown} does not exist yet; the server creates it"));
        }
        Err(err) => return Finding::problem("state dir", format!("cannot inspect {shown}: {err}"), None),
    };
    let fix = |text: String| Some(text);
    if !meta.is_dir() {
        return Finding::problem(
            "state dir",
            format!("{shown} is not a directory"),
            fix(format!("remove it (`rm {shown}`)")),
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        let message = format!("{shown} belongs to uid {}, not to you (uid {me})", meta.uid());
        return Finding::problem("state dir", message, fix("set XDG_STATE_HOME to a directory you own".into()));
    }
    if nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return Finding::problem(
            "state dir",
            format!("{shown} is not writable"),
            fix(format!("run `chmod u+rwx {shown}`")),
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let message = format!("{shown} is open to group or others (mode {mode:04o}); the history and logs are private");
        return Finding::warning("state dir", message, format!("run `chmod 700 {shown}`"));
    }
    Finding::ok("state dir", format!("{shown} is private and writable"))
}

/// Checks the config (every error is a finding of its own); the config when it loads.
fn check_config(file: Option<&Path>, findings: &mut Vec<Finding>) -> Option<Config> {
    let (path, _) = config::config_path(file, &paths::process_env);
    match config::load_all(file, paths::process_env) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                findings.push(Finding::warning("config", warning.clone(), "remove or correct the key"));
            }
            findings.push(match &loaded.config.file {
                Some(file) => Finding::ok("config", format!("{} is valid", file.display())),
                None => Finding::ok("config", format!("no config file at {}: the defaults apply", path.display())),
            });
            Some(loaded.config)
        }
        Err(errors) => {
            let fix = "correct it; `mcli-server config check` checks again";
            findings.extend(errors.0.iter().map(|e| Finding::problem("config", e.to_string(), Some(fix.to_owned()))));
            None
        }
    }
}

/// Each commands dir: how many commands it holds, which are broken or not executable; then
/// python3, which warm workers need.
fn check_commands(config: &Config, findings: &mut Vec<Finding>) {
    let dirs = config.commands_dirs(paths::process_env);
    for (index, dir) in dirs.iter().enumerate() {
        findings.extend(commands_dir(dir, index == 0));
    }
    let workers = Registry::scan(&dirs).list().iter().filter(|c| c.worker).count();
    findings.push(python(workers));
}

fn commands_dir(dir: &Path, default_dir: bool) -> Vec<Finding> {
    let shown = dir.display();
    if !dir.is_dir() {
        return vec![if default_dir {
            Finding::ok("commands dir", format!("{shown} does not exist: only the built-in commands"))
        } else {
            let fix = "create it, or take it out of `[server] commands_dirs`";
            Finding::warning("commands dir", format!("{shown} (from the config) does not exist"), fix)
        }];
    }
    let registry = Registry::scan(&[dir.to_owned()]);
    let list = registry.list();
    let own = list.iter().filter(|c| c.source != "builtin");
    let (broken, fine): (Vec<_>, Vec<_>) = own.partition(|c| c.error.is_some());
    let mut out = vec![Finding::ok(
        "commands dir",
        format!("{shown}: {} command{}", fine.len(), if fine.len() == 1 { "" } else { "s" }),
    )];
    for command in broken {
        let reason = command.error.as_deref().unwrap_or_default();
        let message = format!("command `{}` is broken: {reason}", command.name);
        out.push(Finding::problem("commands dir", message, Some(format!("fix or remove {}", command.source))));
    }
    for file in registry.not_executable() {
        let file = file.display();
        let message = format!("{file} is not executable, so it is not a command");
        out.push(Finding::warning("commands dir", message, format!("run `chmod +x {file}`, or move it elsewhere")));
    }
    out
}

/// python3 on `PATH`: a problem when a warm-worker command needs it, else a warning.
fn python(workers: usize) -> Finding {
    match find_program("python3", std::env::var_os("PATH")) {
        Some(path) => Finding::ok("python3", format!("{} (for warm workers)", path.display())),
        None if workers > 0 => Finding::problem(
            "python3",
            format!("python3 is not on PATH, and {workers} warm-worker command(s) need it"),
            Some("install Python 3 (e.g. `apt-get install python3`)".to_owned()),
        ),
        None => Finding::warning(
            "python3",
            "python3 is not on PATH: warm-worker commands written in Python cannot run",
            "install Python 3 before adding such commands",
        ),
    }
}

fn find_program(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    let path = path?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Whether a server answers, and whether it is of this release.
fn running(server: &ServerPaths) -> Finding {
    if paths::check_runtime_dir(&server.dir).is_err() {
        return Finding::warning("server", "not looked for: the runtime dir is refused", "fix the runtime dir first");
    }
    let conn = match common::connect(server) {
        Ok(Some(conn)) => conn,
        Ok(None) => {
            return Finding::ok("server", format!("`{}` is not running; a client starts it on demand", server.name));
        }
        Err(err) => return Finding::problem("server", format!("{err:#}"), None),
    };
    let mut conn = conn;
    match conn.call::<protocol::Status>(&NoParams {}) {
        Ok(status) if status.version != env!("CARGO_PKG_VERSION") => Finding::warning(
            "server",
            format!(
                "`{}` runs release {} (pid {}), not this one ({})",
                server.name,
                status.version,
                status.pid,
                env!("CARGO_PKG_VERSION")
            ),
            "run `mcli-server restart`",
        ),
        Ok(status) => Finding::ok(
            "server",
            format!("`{}` is running (pid {}, version {})", server.name, status.pid, status.version),
        ),
        Err(err) => Finding::problem(
            "server",
            format!("`{}` answers on {} but not to `status`: {err}", server.name, server.socket.display()),
            Some("run `mcli-server restart`".to_owned()),
        ),
    }
}
