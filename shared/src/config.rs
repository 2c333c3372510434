//! The configuration: `config.toml` with the original daemon's `[api_daemon]` table, environment
//! overrides, and the precedence flag > env > file > default (flags are applied by the binaries
//! on top of what [`load`] returns).
//!
//! An unknown key is a warning that names the file and key; a value of the wrong type or range is
//! an error that names the file, the line and the key, so a typo never silently changes
//! behaviour.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;

use mcli_protocol::Seconds;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::paths;

/// The `[api_daemon]` table, with the original daemon's keys and defaults (but a loopback host).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiDaemonConfig {
    /// Serve the HTTP bridge.
    pub enabled: bool,
    /// The bridge's bind address; loopback unless told otherwise.
    pub host: String,
    /// The bridge's port; absent means random when `use_random_port` is set, else 8000.
    pub port: Option<u16>,
    pub use_random_port: bool,
    /// Log at debug level.
    pub debug: bool,
    /// Open the HTTP bridge on servers that a client starts on demand, not only on an explicit
    /// `mcli-server start`.
    pub auto_start: bool,
    /// Seconds a command may run before it is ended; 0 means no limit.
    pub command_timeout: Seconds,
    pub max_concurrent_commands: usize,
    pub enable_command_caching: bool,
    pub enable_command_history: bool,
    /// The HTTP bridge asks for the token; `false` is accepted for a loopback host only.
    pub require_token: bool,
    /// `GET /metrics` without the token on a listener of its own (`HOST:PORT`), which must be a
    /// loopback address: it is open, as the bridge without a token may only be.
    pub metrics_addr: Option<String>,
}

impl ApiDaemonConfig {
    /// The HTTP bridge's address from `host` and `port` (port 0 = random when `use_random_port`
    /// and no port is set; else 8000).
    pub fn http_addr(&self) -> String {
        let port = self.port.unwrap_or(if self.use_random_port { 0 } else { 8000 });
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{host}:{port}")
    }
}

impl Default for ApiDaemonConfig {
    fn default() -> Self {
        ApiDaemonConfig {
            enabled: false,
            host: "127.0.0.1".to_owned(),
            port: None,
            use_random_port: true,
            debug: false,
            auto_start: false,
            command_timeout: Seconds::new(300.0).unwrap_or_default(),
            max_concurrent_commands: 10,
            enable_command_caching: true,
            enable_command_history: true,
            require_token: true,
            metrics_addr: None,
        }
    }
}

/// The `[server]` table: mcli's own settings beyond the original's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// Directories searched for commands after `$XDG_CONFIG_HOME/mcli/commands`; relative paths
    /// are taken from the config file's directory.
    pub commands_dirs: Vec<PathBuf>,
    /// Commands that may wait for a free slot when `max_concurrent_commands` run; more are refused
    /// as busy.
    pub max_queued_commands: usize,
    /// Bytes of stdout and of stderr kept in a result that is not streamed.
    pub max_captured_output: usize,
    /// Seconds between SIGTERM and SIGKILL when a command is ended.
    pub kill_grace: Seconds,
    /// Seconds without connections or running commands after which the server exits; 0 means
    /// never. When unset: one hour for a server a client started on demand, else never.
    pub idle_timeout: Option<Seconds>,
    /// The most executions the history keeps.
    pub history_max_entries: u64,
    /// The oldest history kept, in days.
    pub history_max_age_days: f64,
    /// Bytes of output (stdout and stderr together) kept on disk for one detached job; past it
    /// the head is kept and the cut is marked.
    pub job_output_max: u64,
    /// Bytes of output kept on disk for all detached jobs together; the oldest finished jobs'
    /// output is pruned first.
    pub jobs_output_total_max: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            commands_dirs: Vec::new(),
            max_queued_commands: 100,
            max_captured_output: 1024 * 1024,
            kill_grace: Seconds::new(0.5).unwrap_or_default(),
            idle_timeout: None,
            history_max_entries: 10_000,
            history_max_age_days: 90.0,
            job_output_max: 16 * 1024 * 1024,
            jobs_output_total_max: 1024 * 1024 * 1024,
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Config {
    pub api_daemon: ApiDaemonConfig,
    pub server: ServerConfig,
    /// The file it was read from, when one was.
    pub file: Option<PathBuf>,
}

impl Config {
    /// Every setting as a dotted key (`server.kill_grace`) and its value, in key order: what
    /// `config show` prints and what a reload compares.
    pub fn keys(&self) -> BTreeMap<String, serde_json::Value> {
        let mut keys = BTreeMap::new();
        let Ok(serde_json::Value::Object(tables)) = serde_json::to_value(self) else { return keys };
        for (table, value) in tables {
            let serde_json::Value::Object(fields) = value else { continue };
            for (key, value) in fields {
                keys.insert(format!("{table}.{key}"), value);
            }
        }
        keys
    }

    /// The directories searched for commands, in order of precedence.
    pub fn commands_dirs(&self, env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
        let mut dirs = vec![paths::config_dir(env).join("commands")];
        dirs.extend(self.server.commands_dirs.iter().cloned());
        dirs
    }
}

/// A loaded configuration and the warnings met on the way (unknown keys).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// Where each key that is not at its default got its value (`api_daemon.port` ...).
    pub sources: BTreeMap<String, Source>,
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The config file, at this line.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(var) => write!(f, "environment {var}"),
        }
    }
}

/// Every error of a configuration, in the order met: a config is taken whole or not at all.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}, line {line}: `{key}` {message}")]
    Invalid { path: PathBuf, line: usize, key: String, message: String },
    #[error("environment variable {var}={value:?}: {message}")]
    Env { var: String, value: String, message: String },
}

/// The keys of `[api_daemon]` that environment variables override.
const ENV_OVERRIDES: [(&str, &str); 4] = [
    ("MCLI_API_DAEMON_ENABLED", "enabled"),
    ("MCLI_API_DAEMON_HOST", "host"),
    ("MCLI_API_DAEMON_PORT", "port"),
    ("MCLI_API_DAEMON_DEBUG", "debug"),
];

/// The config file to read: `explicit` (from `--config`), else `$MCLI_CONFIG`, else the default
/// under the config dir. The flag says whether it was named explicitly, and so must exist.
pub fn config_path(explicit: Option<&Path>, env: &impl Fn(&str) -> Option<OsString>) -> (PathBuf, bool) {
    if let Some(path) = explicit {
        return (path.to_owned(), true);
    }
    if let Some(path) = env("MCLI_CONFIG").filter(|p| !p.is_empty()) {
        return (PathBuf::from(path), true);
    }
    (paths::config_dir(env).join("config.toml"), false)
}

/// Loads the configuration from file and environment; the error is the first one met (see
/// [`load_all`] for every one).
pub fn load(explicit: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Result<Loaded, ConfigError> {
    load_all(explicit, env).map_err(|mut errors| errors.0.swap_remove(0))
}

/// Loads the configuration from file and environment, or reports every error in it: the file
/// that cannot be read or parsed, each invalid key (file, line, key), each invalid variable.
pub fn load_all(explicit: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Result<Loaded, ConfigErrors> {
    let (path, required) = config_path(explicit, &env);
    let mut loaded = Loaded::default();
    let mut errors = Vec::new();
    match fs::read_to_string(&path) {
        Ok(text) => {
            apply_file(&mut loaded, &path, &text, &mut errors);
            loaded.config.file = Some(path);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {}
        Err(source) => errors.push(ConfigError::Read { path, source }),
    }
    for (var, key) in ENV_OVERRIDES {
        let Some(raw) = env(var) else { continue };
        let value = raw.to_string_lossy().into_owned();
        match set_key(&mut loaded.config.api_daemon, key, Input::Env(&value)) {
            Ok(_) => {
                loaded.sources.insert(format!("api_daemon.{key}"), Source::Env(var.to_owned()));
            }
            Err(message) => errors.push(ConfigError::Env { var: var.to_owned(), value, message }),
        }
    }
    if errors.is_empty() { Ok(loaded) } else { Err(ConfigErrors(errors)) }
}

/// Parses `text` (the contents of `path`) into `loaded`, adding every error to `errors`.
pub fn apply_file(loaded: &mut Loaded, path: &Path, text: &str, errors: &mut Vec<ConfigError>) {
    let table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(e) => {
            let message = e.to_string().trim_end().to_owned();
            errors.push(ConfigError::Syntax { path: path.to_owned(), message });
            return;
        }
    };
    let line = |key: &str| key_line(text, key).unwrap_or(1);
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line: line(key),
        key: key.to_owned(),
        message,
    };
    let unknown = |key: &str| format!("config file {}: unknown key `{key}` ignored", path.display());
    let first_new = errors.len();
    for (name, value) in &table {
        let section = match (name.as_str(), value) {
            (table @ ("api_daemon" | "server"), toml::Value::Table(section)) => (table, section),
            (table @ ("api_daemon" | "server"), other) => {
                errors.push(invalid(table, format!("must be a table, not {}", other.type_str())));
                continue;
            }
            (other, _) => {
                loaded.warnings.push(unknown(other));
                continue;
            }
        };
        let base = path.parent().unwrap_or(Path::new("/"));
        for (key, value) in section.1 {
            let dotted = format!("{}.{key}", section.0);
            let set = match section.0 {
                "api_daemon" => set_key(&mut loaded.config.api_daemon, key, Input::Toml(value)),
                _ => set_server_key(&mut loaded.config.server, key, value, base),
            };
            match set {
                Ok(true) => {
                    let source = Source::File { path: path.to_owned(), line: line(&dotted) };
                    loaded.sources.insert(dotted, source);
                }
                Ok(false) => loaded.warnings.push(unknown(&dotted)),
                Err(message) => errors.push(invalid(&dotted, message)),
            }
        }
    }
    // The table is sorted by key: report in the order of the file.
    errors[first_new..].sort_by_key(|err| match err {
        ConfigError::Invalid { line, .. } => *line,
        _ => 0,
    });
}

/// A value from the file or from an environment variable.
enum Input<'a> {
    Toml(&'a toml::Value),
    Env(&'a str),
}

impl Input<'_> {
    fn bool(&self) -> Result<bool, String> {
        match self {
            Input::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Input::Env(text) => match text.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err("must be true or false".to_owned()),
            },
            Input::Toml(other) => Err(format!("must be true or false, not {}", describe(other))),
        }
    }

    fn int(&self, min: i64, max: i64) -> Result<i64, String> {
        let range = || format!("must be a whole number from {min} to {max}");
        let n = match self {
            Input::Toml(toml::Value::Integer(n)) => *n,
            Input::Toml(other) => return Err(format!("{}, not {}", range(), describe(other))),
            Input::Env(text) => text.trim().parse::<i64>().map_err(|_| range())?,
        };
        if (min..=max).contains(&n) { Ok(n) } else { Err(format!("{}, not {n}", range())) }
    }

    fn seconds(&self) -> Result<Seconds, String> {
        let rule = "must be a number of seconds from 0 (no limit) to 1e9";
        let n = match self {
            Input::Toml(toml::Value::Integer(n)) => *n as f64,
            Input::Toml(toml::Value::Float(f)) => *f,
            Input::Toml(other) => return Err(format!("{rule}, not {}", describe(other))),
            Input::Env(text) => text.trim().parse::<f64>().map_err(|_| rule.to_owned())?,
        };
        Seconds::new(n).map_err(|_| format!("{rule}, not {n}"))
    }

    fn string(&self) -> Result<String, String> {
        match self {
            Input::Toml(toml::Value::String(s)) => Ok(s.clone()),
            Input::Toml(other) => Err(format!("must be a string, not {}", describe(other))),
            Input::Env(text) => Ok((*text).to_owned()),
        }
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(n) => format!("the integer {n}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        other => format!("a {}", other.type_str()),
    }
}

/// Sets one `[api_daemon]` key. `Ok(false)` means the key is unknown.
fn set_key(cfg: &mut ApiDaemonConfig, key: &str, input: Input<'_>) -> Result<bool, String> {
    match key {
        "enabled" => cfg.enabled = input.bool()?,
        "host" => {
            let host = input.string()?;
            if host != "localhost" && host.parse::<IpAddr>().is_err() {
                return Err(format!("must be an IP address or `localhost`, not {host:?}"));
            }
            cfg.host = host;
        }
        "port" => cfg.port = Some(input.int(1, 65535)? as u16),
        "use_random_port" => cfg.use_random_port = input.bool()?,
        "debug" => cfg.debug = input.bool()?,
        "auto_start" => cfg.auto_start = input.bool()?,
        "command_timeout" => cfg.command_timeout = input.seconds()?,
        "max_concurrent_commands" => cfg.max_concurrent_commands = input.int(1, 10_000)? as usize,
        "enable_command_caching" => cfg.enable_command_caching = input.bool()?,
        "enable_command_history" => cfg.enable_command_history = input.bool()?,
        "require_token" => cfg.require_token = input.bool()?,
        "metrics_addr" => cfg.metrics_addr = Some(loopback_addr(&input.string()?)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// A loopback `HOST:PORT` (`127.0.0.1:9100`, `[::1]:9100`, `localhost:9100`; port 0 picks one).
fn loopback_addr(text: &str) -> Result<String, String> {
    let rule = "must be a loopback address and port, such as \"127.0.0.1:9100\"";
    let loopback = match text.strip_prefix("localhost:") {
        Some(port) => port.parse::<u16>().is_ok(),
        None => match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr.ip().is_loopback(),
            Err(_) => return Err(format!("{rule}, not {text:?}")),
        },
    };
    if !loopback {
        return Err(format!("{rule} (the metrics there need no token), not {text:?}"));
    }
    Ok(text.to_owned())
}

/// Sets one `[server]` key. `Ok(false)` means the key is unknown.
fn set_server_key(cfg: &mut ServerConfig, key: &str, value: &toml::Value, base: &Path) -> Result<bool, String> {
    let input = Input::Toml(value);
    match key {
        "commands_dirs" => {
            let rule = "must be an array of directory paths";
            let toml::Value::Array(items) = value else {
                return Err(format!("{rule}, not {}", describe(value)));
            };
            cfg.commands_dirs = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(dir) => Ok(base.join(dir)),
                    other => Err(format!("{rule}, but one element is {}", describe(other))),
                })
                .collect::<Result<_, _>>()?;
        }
        "max_queued_commands" => cfg.max_queued_commands = input.int(0, 100_000)? as usize,
        "max_captured_output" => cfg.max_captured_output = input.int(0, 1 << 30)? as usize,
        "kill_grace" => cfg.kill_grace = input.seconds()?,
        "job_output_max" => cfg.job_output_max = input.int(0, 1 << 40)? as u64,
        "jobs_output_total_max" => cfg.jobs_output_total_max = input.int(0, 1 << 50)? as u64,
        "idle_timeout" => cfg.idle_timeout = Some(input.seconds()?),
        "history_max_entries" => cfg.history_max_entries = input.int(1, 100_000_000)? as u64,
        "history_max_age_days" => {
            let days = input.seconds().map_err(|_| "must be a number of days, more than 0".to_owned())?.get();
            if days <= 0.0 {
                return Err(format!("must be a number of days, more than 0, not {days}"));
            }
            cfg.history_max_age_days = days;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The 1-based line where the dotted `key` is defined in `text`, if it can be found.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, value) = table.get_key_value(part)?;
        if parts.peek().is_none() {
            let start = name.span().start;
            return Some(text[..start].matches('\n').count() + 1);
        }
        table = value.get_ref().as_table()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn load_text(text: &str) -> Result<Loaded, ConfigError> {
        let mut loaded = Loaded::default();
        let mut errors = Vec::new();
        apply_file(&mut loaded, Path::new("/x/config.toml"), text, &mut errors);
        if errors.is_empty() { Ok(loaded) } else { Err(errors.swap_remove(0)) }
    }

    #[test]
    fn metrics_addr_must_be_loopback() {
        let cfg = load_text("[api_daemon]\nmetrics_addr = \"127.0.0.1:9100\"\n").unwrap().config.api_daemon;
        assert_eq!(cfg.metrics_addr.as_deref(), Some("127.0.0.1:9100"));
        for good in ["[::1]:0", "localhost:9100"] {
            assert!(load_text(&format!("[api_daemon]\nmetrics_addr = {good:?}\n")).is_ok(), "{good}");
        }
        let err = load_text("[api_daemon]\nmetrics_addr = \"0.0.0.0:9100\"\n").unwrap_err().to_string();
        assert!(err.contains("`api_daemon.metrics_addr` must be a loopback address and port"), "{err}");
        let err = load_text("[api_daemon]\nmetrics_addr = \"9100\"\n").unwrap_err().to_string();
        assert!(err.contains("not \"9100\""), "{err}");
    }

    #[test]
    fn every_error_is_reported_and_every_value_has_its_source() {
        let mut loaded = Loaded::default();
        let mut errors = Vec::new();
        let text = "[api_daemon]\nport = 0\ndebug = \"yes\"\ncommand_timeout = 5\n[server]\nkill_grace = -1\n";
        apply_file(&mut loaded, Path::new("/x/config.toml"), text, &mut errors);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("line 2: `api_daemon.port`"), "{messages:?}");
        assert!(messages[1].contains("line 3: `api_daemon.debug`"), "{messages:?}");
        assert!(messages[2].contains("line 6: `server.kill_grace`"), "{messages:?}");
        let source = Source::File { path: PathBuf::from("/x/config.toml"), line: 4 };
        assert_eq!(loaded.sources.get("api_daemon.command_timeout"), Some(&source));
        assert_eq!(source.to_string(), "/x/config.toml:4");
    }

    #[test]
    fn defaults_are_the_originals_but_loopback() {
        let cfg = ApiDaemonConfig::default();
        assert_eq!(cfg.host, "127.0.0.1");
        assert!(!cfg.enabled && cfg.use_random_port && !cfg.auto_start);
        assert_eq!((cfg.command_timeout.get(), cfg.max_concurrent_commands), (300.0, 10));
    }

    #[test]
    fn reads_every_key() {
        let loaded = load_text(
            "[api_daemon]\nenabled = true\nhost = \"::1\"\nport = 8123\nuse_random_port = false\n\
             debug = true\nauto_start = true\ncommand_timeout = 2.5\nmax_concurrent_commands = 3\n\
             enable_command_caching = false\nenable_command_history = false\n",
        )
        .unwrap();
        let cfg = loaded.config.api_daemon;
        assert!(cfg.enabled && cfg.debug && cfg.auto_start && !cfg.use_random_port);
        assert_eq!((cfg.host.as_str(), cfg.port), ("::1", Some(8123)));
        assert_eq!((cfg.command_timeout.get(), cfg.max_concurrent_commands), (2.5, 3));
        assert!(!cfg.enable_command_caching && !cfg.enable_command_history);
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn reads_the_server_table() {
        let loaded = load_text(
            "[server]\ncommands_dirs = [\"cmds\", \"/abs\"]\nmax_queued_commands = 0\nmax_captured_output = 10\nkill_grace = 1.5\n",
        )
        .unwrap();
        let server = loaded.config.server;
        assert_eq!(server.commands_dirs, vec![PathBuf::from("/x/cmds"), PathBuf::from("/abs")]);
        assert_eq!((server.max_queued_commands, server.max_captured_output, server.kill_grace.get()), (0, 10, 1.5));
        let err = load_text("[server]\ncommands_dirs = [1]\n").unwrap_err().to_string();
        assert!(err.contains("`server.commands_dirs` must be an array of directory paths"), "{err}");
    }

    #[test]
    fn unknown_keys_warn_with_file_and_key() {
        let loaded = load_text("colour = 1\n[api_daemon]\nprot = 1\n").unwrap();
        assert_eq!(
            loaded.warnings,
            vec![
                "config file /x/config.toml: unknown key `api_daemon.prot` ignored",
                "config file /x/config.toml: unknown key `colour` ignored"
            ]
        );
    }

    #[test]
    fn invalid_values_name_file_line_and_key() {
        let err = load_text("# comment\n[api_daemon]\n\nport = \"abc\"\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "config file /x/config.toml, line 4: `api_daemon.port` must be a whole number from 1 to 65535, not the string \"abc\""
        );
        let err = load_text("[api_daemon]\nmax_concurrent_commands = 0\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("from 1 to 10000, not 0"), "{err}");
        let err = load_text("[api_daemon]\nhost = \"example.com\"\n").unwrap_err().to_string();
        assert!(err.contains("`api_daemon.host` must be an IP address"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = load_text("[api_daemon\n").unwrap_err().to_string();
        assert!(err.starts_with("config file /x/config.toml is not valid TOML"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_bad_env_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        fs::write(&file, "[api_daemon]\nport = 1000\ndebug = false\n").unwrap();
        let env = |name: &str| match name {
            "MCLI_API_DAEMON_PORT" => Some(OsString::from("2000")),
            "MCLI_API_DAEMON_DEBUG" => Some(OsString::from("yes")),
            _ => None,
        };
        let cfg = load(Some(&file), env).unwrap().config.api_daemon;
        assert_eq!((cfg.port, cfg.debug), (Some(2000), true));

        let bad = |name: &str| (name == "MCLI_API_DAEMON_ENABLED").then(|| OsString::from("maybe"));
        let err = load(Some(&file), bad).unwrap_err().to_string();
        assert_eq!(err, "environment variable MCLI_API_DAEMON_ENABLED=\"maybe\": must be true or false");
    }

    #[test]
    fn a_named_file_must_exist_the_default_need_not() {
        let err = load(Some(Path::new("/nonexistent/c.toml")), no_env).unwrap_err().to_string();
        assert!(err.starts_with("cannot read config file /nonexistent/c.toml"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_owned();
        let env = move |name: &str| (name == "XDG_CONFIG_HOME").then(|| home.clone().into_os_string());
        assert_eq!(load(None, env).unwrap().config, Config::default());
    }
}
