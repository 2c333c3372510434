//! `mcli-server jobs`: the running and recent detached jobs (id, command, state, start,
//! duration, exit), from the running server, or from the state dir when none runs.

use std::process::ExitCode;

use mcli_protocol::{self as protocol, JobInfo, JobsParams, JobsResult};
use mcli_shared::paths::{self, ServerPaths};

use super::common;
use crate::jobs::Jobs;

pub(super) fn run(server: &ServerPaths, json: bool) -> anyhow::Result<ExitCode> {
    let params = JobsParams { state: None, limit: Some(1000) };
    let result = match common::connect(server)? {
        Some(mut conn) => conn.call::<protocol::Jobs>(&params)?,
        None => {
            let jobs = Jobs::new(Jobs::dir_for(&paths::state_dir(paths::process_env), &server.name));
            JobsResult { jobs: jobs.all().into_iter().take(1000).map(|(m, out, err)| m.to_info(out, err)).collect() }
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render(&result.jobs));
    }
    Ok(ExitCode::SUCCESS)
}

/// The table, oldest at the top (as `history` shows it).
fn render(jobs: &[JobInfo]) -> String {
    if jobs.is_empty() {
        return "no detached jobs\n".to_owned();
    }
    let mut out = format!("{:>6}  {:11}  {:20}  {:>9}  {:>4}  COMMAND\n", "ID", "STATE", "STARTED", "DURATION", "EXIT");
    for job in jobs.iter().rev() {
        let exit = match (job.exit_code, job.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => format!("sig{signal}"),
            (None, None) => "-".to_owned(),
        };
        let mut line = job.command.clone();
        for arg in &job.args {
            line.push(' ');
            line.push_str(arg);
        }
        let mut notes = String::new();
        if job.truncated {
            notes += "  (output cut at server.job_output_max)";
        }
        if job.pruned {
            notes += "  (output pruned)";
        }
        out += &format!(
            "{:>6}  {:11}  {:20}  {:>7}ms  {:>4}  {line}{notes}\n",
            job.id, job.state, job.started, job.duration_ms, exit
        );
    }
    out
}
