//! `meta.json`, the small record of one detached job beside its output files: what ran, when,
//! and how it ended. It is replaced whole (written aside, then renamed), so a reader, or a
//! server started after a crash, never sees half of one.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use mcli_protocol::{ExecStatus, ExecuteResult, JobInfo, TimeLimit};
use serde::{Deserialize, Serialize};

/// The most bytes of a `meta.json` read: a job's arguments are bounded by the request size.
const MAX_META: u64 = 17 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub id: u64,
    pub command: String,
    pub args: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    pub transport: String,
    /// Start time, RFC 3339 in UTC, and in milliseconds since the epoch.
    pub started: String,
    pub started_ms: u64,
    pub state: ExecStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    /// The server that ran it: its commands carry tags that start with this pid (see
    /// `mcli_shared::tree`), which is how a later server finds what a dead one left running.
    pub server_pid: u32,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub pruned: bool,
    #[serde(default)]
    pub time_limit: Option<TimeLimit>,
}

impl Meta {
    pub fn is_running(&self) -> bool {
        self.state == ExecStatus::Running
    }

    /// The job's result, as `execute` would have answered it.
    pub fn to_result(&self) -> ExecuteResult {
        ExecuteResult {
            id: self.id,
            command: self.command.clone(),
            status: self.state,
            exit_code: self.exit_code,
            signal: self.signal,
            duration_ms: self.duration_ms,
            cached: false,
            stdout: None,
            stderr: None,
            stdout_b64: None,
            stderr_b64: None,
            truncated: self.truncated.then_some(true),
            time_limit: self.time_limit.clone(),
        }
    }

    /// The job as `jobs` and `wait` show it, with the sizes of its output files.
    pub fn to_info(&self, stdout_bytes: u64, stderr_bytes: u64) -> JobInfo {
        let duration_ms = if self.is_running() { self.elapsed_ms() } else { self.duration_ms };
        JobInfo {
            id: self.id,
            command: self.command.clone(),
            args: self.args.clone(),
            state: self.state.as_str().to_owned(),
            started: self.started.clone(),
            duration_ms,
            exit_code: self.exit_code,
            signal: self.signal,
            stdout_bytes,
            stderr_bytes,
            truncated: self.truncated,
            pruned: self.pruned,
        }
    }

    /// Milliseconds since the start, by the wall clock.
    pub fn elapsed_ms(&self) -> u64 {
        let started = SystemTime::UNIX_EPOCH + Duration::from_millis(self.started_ms);
        SystemTime::now().duration_since(started).map_or(0, |d| d.as_millis() as u64)
    }

    /// Reads the `meta.json` of a job directory.
    pub fn read(dir: &Path) -> io::Result<Meta> {
        let text = mcli_shared::paths::read_own_file(&dir.join("meta.json"), MAX_META)?;
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Replaces the `meta.json` of a job directory whole.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let text = serde_json::to_vec(self).map_err(io::Error::other)?;
        let aside = dir.join("meta.json.new");
        std::fs::write(&aside, text)?;
        std::fs::rename(aside, dir.join("meta.json"))
    }
}
