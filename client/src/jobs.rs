//! Detached jobs from the command line: `--detach` (start one, print its id), `--attach ID...`
//! (follow one or several, exit with the worst status), `--wait ID... [--any]`, and
//! `--on-interrupt detach` (a call that Ctrl-C detaches rather than cancels: it runs as a job
//! followed from the start).
//!
//! Ctrl-C while following detaches: the job runs on and stderr says how to come back; with
//! `--cancel-on-interrupt` it cancels the job instead (a second Ctrl-C leaves at once).

use std::io::{self, IsTerminal as _, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use mcli_protocol::framing::Framing;
use mcli_protocol::{
    Attach, AttachParams, Cancel, CancelParams, ExecStatus, Execute, ExecuteResult, JobInfo, OutputParams, Stream,
    Wait, WaitParams,
};

use crate::args::Cli;
use crate::error::ClientError;
use crate::exit;
use crate::target::Target;

/// Handles the job flags of `cli`; `None` when none is given (a plain call).
pub fn run(cli: &Cli) -> Option<Result<i32, ClientError>> {
    for (given, flag, needs) in [
        (cli.any && cli.wait.is_empty(), "--any", "--wait"),
        (cli.cancel_on_interrupt && cli.attach.is_empty(), "--cancel-on-interrupt", "--attach"),
    ] {
        if given {
            eprintln!("mcli-client: {flag} goes with {needs} ID...");
            return Some(Ok(exit::USAGE));
        }
    }
    if !cli.attach.is_empty() {
        let mode = if cli.cancel_on_interrupt { OnInterrupt::Cancel } else { OnInterrupt::Detach };
        return Some(attach_all(cli, &cli.attach, mode));
    }
    if !cli.wait.is_empty() {
        return Some(wait(cli, &cli.wait, cli.any));
    }
    if cli.detach {
        // A job that never started (cancelled while it waited for a slot) has its status.
        return Some(detach(cli).map(|result| {
            println!("{}", result.id);
            if result.status == ExecStatus::Running { 0 } else { exit::exit_status(&result) }
        }));
    }
    if cli.on_interrupt.as_deref() == Some("detach") && !cli.json {
        return Some(detach(cli).and_then(|job| attach_all(cli, &[job.id], OnInterrupt::DetachSayingId)));
    }
    None
}

/// Starts the command of `cli` as a detached job.
fn detach(cli: &Cli) -> Result<ExecuteResult, ClientError> {
    let (name, args) = cli.command.split_first().ok_or(ClientError::NoCommand)?;
    let mut params = crate::remote::execute_params(name, args.to_vec(), cli)?;
    (params.detach, params.stdin_stream, params.stream) = (true, false, Some(false));
    let mut conn = Target::from_cli(cli)?.connect(true, cli.quiet, Framing::Lines)?;
    conn.call::<Execute>(&params).map_err(|err| ClientError::from_call(name, err))
}

/// What Ctrl-C does while following.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnInterrupt {
    /// Leave; the job runs on.
    Detach,
    /// Leave, and say the id to reattach (a call started attached, `--on-interrupt detach`).
    DetachSayingId,
    /// Cancel the jobs and follow them to their end.
    Cancel,
}

/// Follows `ids` to their ends, each in a thread of its own, and returns the worst status.
fn attach_all(cli: &Cli, ids: &[u64], mode: OnInterrupt) -> Result<i32, ClientError> {
    let target = Target::from_cli(cli)?;
    watch_interrupts(Target::from_cli(cli)?, ids, mode, cli.quiet)?;
    let prefix = ids.len() > 1;
    let statuses: Vec<Result<i32, ClientError>> = std::thread::scope(|scope| {
        let threads: Vec<_> = ids.iter().map(|id| scope.spawn(|| attach_one(&target, *id, prefix, cli))).collect();
        threads.into_iter().map(|t| t.join().unwrap_or(Ok(exit::FAILURE))).collect()
    });
    let mut worst = 0;
    for status in statuses {
        worst = worst.max(status?);
    }
    Ok(worst)
}

/// Follows job `id` to its end; its exit status as a direct call would have had it.
fn attach_one(target: &Target, id: u64, prefix: bool, cli: &Cli) -> Result<i32, ClientError> {
    // A server is started when none runs: jobs are on disk, and a new server reports them.
    let mut conn = target.connect(true, cli.quiet, Framing::Lines)?;
    let request = conn.send_request::<Attach>(&AttachParams { id, ..AttachParams::default() });
    let what = format!("job {id}");
    let request = request.map_err(|err| ClientError::from_call(&what, err))?;
    let mut lines = Lines { id, prefix, partial: [Vec::new(), Vec::new()] };
    let result = conn.wait_execute(request, |output| lines.write(output));
    let flushed = lines.flush();
    let result = result.map_err(|err| ClientError::from_call(&what, err))?;
    flushed.map_err(|source| ClientError::Output { command: what, source })?;
    exit::say_why_it_ended(&result, cli.quiet);
    Ok(exit::exit_status(&result))
}

/// Writes a job's output: as it comes for one job; a whole line at a time, after `[ID] `, for
/// several, so that their lines do not mix.
struct Lines {
    id: u64,
    prefix: bool,
    partial: [Vec<u8>; 2],
}

/// Keeps the output of several jobs' threads from interleaving mid-line.
static OUTPUT: Mutex<()> = Mutex::new(());

impl Lines {
    fn write(&mut self, output: &OutputParams) -> io::Result<()> {
        let bytes = output.bytes().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !self.prefix {
            return emit(output.stream, &bytes);
        }
        let index = usize::from(output.stream == Stream::Stderr);
        self.partial[index].extend_from_slice(&bytes);
        let Some(last) = self.partial[index].iter().rposition(|b| *b == b'\n') else { return Ok(()) };
        let rest = self.partial[index].split_off(last + 1);
        let whole = std::mem::replace(&mut self.partial[index], rest);
        emit(output.stream, &self.prefixed(&whole))
    }

    /// Writes what is left of an unfinished last line.
    fn flush(&mut self) -> io::Result<()> {
        for (index, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let mut rest = std::mem::take(&mut self.partial[index]);
            if !rest.is_empty() {
                rest.push(b'\n');
                emit(stream, &self.prefixed(&rest))?;
            }
        }
        Ok(())
    }

    fn prefixed(&self, lines: &[u8]) -> Vec<u8> {
        let tag = format!("[{}] ", self.id);
        let mut out = Vec::with_capacity(lines.len() + 16);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(tag.as_bytes());
            out.extend_from_slice(line);
        }
        out
    }
}

fn emit(stream: Stream, bytes: &[u8]) -> io::Result<()> {
    let _turn = OUTPUT.lock().unwrap_or_else(|p| p.into_inner());
    match stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        }
        Stream::Stderr => io::stderr().lock().write_all(bytes),
    }
}

/// On Ctrl-C: leaves (the jobs run on), or cancels the jobs once and leaves on a second one.
fn watch_interrupts(target: Target, ids: &[u64], mode: OnInterrupt, quiet: bool) -> Result<(), ClientError> {
    let (mut read, write) = UnixStream::pair().map_err(ClientError::Bridge)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, write).map_err(ClientError::Bridge)?;
    let ids = ids.to_vec();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let mut cancelled = false;
        while std::io::Read::read(&mut read, &mut byte).is_ok_and(|n| n > 0) {
            if mode == OnInterrupt::Cancel && !cancelled {
                cancelled = true;
                cancel(&target, &ids, quiet);
                continue;
            }
            let _ = io::stdout().flush();
            let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
            match mode {
                OnInterrupt::DetachSayingId => eprintln!(
                    "\nmcli-client: detached; job {list} runs on; follow it again with `mcli-client --attach {list}`"
                ),
                _ if !quiet => eprintln!("\nmcli-client: detached from job {list}; it runs on"),
                _ => {}
            }
            std::process::exit(exit::INTERRUPTED);
        }
    });
    Ok(())
}

/// Cancels `ids` over a connection of its own (the following one is busy reading).
fn cancel(target: &Target, ids: &[u64], quiet: bool) {
    let Ok(mut conn) = target.connect(false, true, Framing::Lines) else { return };
    for id in ids {
        if conn.call::<Cancel>(&CancelParams { id: *id }).is_ok() && !quiet {
            eprintln!("\nmcli-client: cancelling job {id}");
        }
    }
}

/// Waits for `ids` (all, or the first with `any`); the worst status of those ended.
fn wait(cli: &Cli, ids: &[u64], any: bool) -> Result<i32, ClientError> {
    let mut conn = Target::from_cli(cli)?.connect(true, cli.quiet, Framing::Lines)?;
    let progress = !cli.quiet && io::stderr().is_terminal();
    let timeout = progress.then_some(1.0);
    loop {
        let params = WaitParams { ids: ids.to_vec(), any, timeout };
        let result = conn.call::<Wait>(&params).map_err(|err| ClientError::from_call("wait", err))?;
        if progress {
            show_progress(&result.jobs, result.done);
        }
        if result.done {
            return Ok(worst(&result.jobs));
        }
    }
}

/// `done/total` and the ids still running, on one line of the terminal.
fn show_progress(jobs: &[JobInfo], done: bool) {
    let ended = jobs.iter().filter(|j| j.state != "running").count();
    let running: Vec<String> = jobs.iter().filter(|j| j.state == "running").map(|j| j.id.to_string()).collect();
    let running = if running.is_empty() { String::new() } else { format!("; running: {}", running.join(" ")) };
    eprint!("\r\x1b[Kmcli-client: {ended}/{} done{running}", jobs.len());
    if done {
        eprintln!();
    }
}

/// The worst exit status among the jobs that ended: the highest (0 only when all exited 0).
fn worst(jobs: &[JobInfo]) -> i32 {
    jobs.iter()
        .filter(|j| j.state != "running")
        .map(|j| {
            let status: ExecStatus =
                serde_json::from_value(serde_json::Value::String(j.state.clone())).unwrap_or(ExecStatus::Failed);
            exit::status_of(status, j.exit_code, j.signal)
        })
        .max()
        .unwrap_or(0)
}
