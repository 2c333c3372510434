//! Command manifests: `NAME.toml` in a commands dir describes how to run the command NAME. The
//! format is strict: an unknown key is an error naming the file and the key, so a typo never
//! silently drops a setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcli_protocol::Seconds;
use serde::Deserialize;

/// A manifest as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    description: Option<String>,
    run: Vec<String>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cache: Option<RawCache>,
    #[serde(default)]
    worker: Option<RawWorker>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    ttl: f64,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    #[serde(default)]
    max_workers: Option<u32>,
    #[serde(default)]
    idle_timeout: Option<f64>,
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub file: PathBuf,
    pub description: String,
    /// The program and its leading arguments; the call's arguments follow them.
    pub run: Vec<String>,
    pub timeout: Option<Duration>,
    /// Added to the caller's environment.
    pub env: BTreeMap<String, String>,
    pub cache: Option<CachePolicy>,
    /// Present: a warm, persistent process serves the calls (the worker protocol).
    pub worker: Option<WorkerPolicy>,
}

impl Manifest {
    /// The folder of the manifest: where its relative paths point, and where its worker runs.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("/"))
    }
}

/// How warm workers of a command are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerPolicy {
    /// Workers running at once; further calls wait.
    pub max_workers: usize,
    /// A worker with no call for this long is stopped.
    pub idle_timeout: Duration,
}

/// When results of a command may be reused.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    pub ttl: Duration,
    /// Variables whose values are part of the cache key, besides command, args and cwd.
    pub env: Vec<String>,
}

/// Why a manifest cannot be used; the message names the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read: {message}", file.display())]
    Read { file: PathBuf, message: String },
    /// Not TOML, a missing or unknown key, a value of the wrong type.
    #[error("{}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    /// A value out of its range.
    #[error("{}: {what}", file.display())]
    Invalid { file: PathBuf, what: String },
}

/// Reads and parses the manifest `file`.
pub fn load(file: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ManifestError::Read { file: file.to_owned(), message: e.to_string() })?;
    parse(file, &text)
}

/// Parses the manifest text of `file`; the error says what is wrong, with the file's name.
pub fn parse(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let message = e.to_string();
        // toml's message starts with the position and quotes the line; keep it on one line.
        let flat: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('|')).collect();
        ManifestError::Syntax { file: file.to_owned(), message: flat.join(": ") }
    })?;
    let invalid = |what: String| ManifestError::Invalid { file: file.to_owned(), what };
    if raw.run.is_empty() || raw.run[0].is_empty() {
        return Err(invalid("`run` must name a program: run = [\"program\", \"arg\", ...]".to_owned()));
    }
    let seconds = |key: &str, value: f64| -> Result<Duration, ManifestError> {
        Seconds::positive(value)
            .map(Seconds::duration)
            .map_err(|_| invalid(format!("`{key}` must be a positive number of seconds, not {value}")))
    };
    let timeout = raw.timeout.map(|t| seconds("timeout", t)).transpose()?;
    let cache = match raw.cache {
        Some(cache) => Some(CachePolicy { ttl: seconds("cache.ttl", cache.ttl)?, env: cache.env }),
        None => None,
    };
    let worker = match raw.worker {
        Some(worker) => {
            let max_workers = worker.max_workers.unwrap_or(1);
            if !(1..=64).contains(&max_workers) {
                return Err(invalid(format!("`worker.max_workers` must be from 1 to 64, not {max_workers}")));
            }
            let idle_timeout = seconds("worker.idle_timeout", worker.idle_timeout.unwrap_or(600.0))?;
            Some(WorkerPolicy { max_workers: max_workers as usize, idle_timeout })
        }
        None => None,
    };
    Ok(Manifest {
        file: file.to_owned(),
        description: raw.description.unwrap_or_else(|| format!("runs {}", raw.run.join(" "))),
        run: raw.run,
        timeout,
        env: raw.env,
        cache,
        worker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Manifest, String> {
        parse(Path::new("/c/resize.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_documented_format() {
        let m = parse_text(
            "description = \"Resize images\"\nrun = [\"python3\", \"resize.py\"]\ntimeout = 30\n\
             env = { MODE = \"fast\" }\n[cache]\nttl = 60\nenv = [\"LANG\"]\n",
        )
        .unwrap();
        assert_eq!(m.description, "Resize images");
        assert_eq!(m.run, vec!["python3", "resize.py"]);
        assert_eq!(m.timeout, Some(Duration::from_secs(30)));
        assert_eq!(m.env["MODE"], "fast");
        assert_eq!(m.cache, Some(CachePolicy { ttl: Duration::from_secs(60), env: vec!["LANG".into()] }));
    }

    #[test]
    fn unknown_keys_name_the_file_and_key() {
        let err = parse_text("run = [\"x\"]\ntimeuot = 3\n").unwrap_err();
        assert!(err.starts_with("/c/resize.toml: ") && err.contains("unknown field `timeuot`"), "{err}");
        let err = parse_text("run = [\"x\"]\n[cache]\nttl = 1\nenvs = []\n").unwrap_err();
        assert!(err.contains("unknown field `envs`"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(parse_text("run = []\n").unwrap_err().contains("`run` must name a program"));
        assert!(parse_text("description = \"x\"\n").unwrap_err().contains("missing field `run`"));
        assert!(parse_text("run = [\"x\"]\ntimeout = -1\n").unwrap_err().contains("`timeout` must be a positive"));
        assert!(parse_text("run = [\"x\"]\n[worker]\nmax_workers = 0\n").unwrap_err().contains("max_workers"));
        let worker = parse_text("run = [\"x\"]\n[worker]\nmax_workers = 2\nidle_timeout = 5\n").unwrap().worker;
        assert_eq!(worker, Some(WorkerPolicy { max_workers: 2, idle_timeout: Duration::from_secs(5) }));
    }
}
