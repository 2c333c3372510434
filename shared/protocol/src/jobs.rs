//! The wire types of detached jobs: `execute` with `detach: true` starts one, and `attach`,
//! `wait` and `jobs` follow, wait for and list them. A job's output is kept by the server (on
//! disk), so a client may come and go while the job runs.

use serde::{Deserialize, Serialize};

use crate::{ExecuteResult, Method};

macro_rules! job_method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty, $result:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub enum $ty {}
        impl Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}

job_method!(
    /// Replay a job's output from an offset, follow it live, and end with its result.
    Attach, "attach", AttachParams, ExecuteResult
);
job_method!(
    /// Wait until every one (or, with `any`, one) of some jobs has ended.
    Wait, "wait", WaitParams, WaitResult
);
job_method!(
    /// The running and recent detached jobs, newest first.
    Jobs, "jobs", JobsParams, JobsResult
);

/// Params of `attach`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachParams {
    /// The job's execution id.
    pub id: u64,
    /// Bytes of standard output to skip (default 0: from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Bytes of standard error to skip (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_offset: Option<u64>,
    /// `false`: stop at the end of what the job has written so far and answer with the job as
    /// it is (`running` while it runs), instead of following it to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
}

/// Params of `wait`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The jobs' execution ids (at most 1,000).
    pub ids: Vec<u64>,
    /// Return as soon as one has ended, instead of all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any: bool,
    /// Return after this many seconds even if they still run (a client showing progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
}

/// What `wait` returns: each job as it is now, in the order asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitResult {
    pub jobs: Vec<JobInfo>,
    /// Whether the wait is over (all ended, or one with `any`); false after a `timeout`.
    pub done: bool,
}

/// Params of `jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsParams {
    /// Only jobs in this state (`running`, `completed`, `failed`, `timed_out`, `cancelled`,
    /// `interrupted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most this many (default 100, at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsResult {
    pub jobs: Vec<JobInfo>,
}

/// One detached job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    pub command: String,
    pub args: Vec<String>,
    /// `running`, or how it ended: `completed`, `failed`, `timed_out`, `cancelled`, or
    /// `interrupted` (the server ended while it ran).
    pub state: String,
    /// Start time, RFC 3339 in UTC.
    pub started: String,
    /// How long it ran (so far, while running).
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Bytes of standard output and standard error kept.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// The job wrote more than the server keeps per job: the head is kept, the cut is marked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Its output was removed to keep the total under the server's limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
}

/// The `data` of a [`crate::code::JOB_NOT_FOUND`] error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobNotFound {
    pub id: u64,
    /// True when the job existed and its output has been pruned; false when it never existed
    /// (or is not a detached job).
    pub pruned: bool,
}
