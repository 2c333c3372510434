//! `mcli-server stop`: ask the running server to shut down, and wait until it is gone.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use mcli_protocol::{self as protocol, NoParams, ShutdownParams};
use mcli_shared::lockfile;
use mcli_shared::paths::ServerPaths;

use super::common;
use crate::lifecycle::SHUTDOWN_GRACE;

pub(super) fn run(server: &ServerPaths) -> anyhow::Result<ExitCode> {
    stop(server)?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the server to shut down, then waits until it is gone: it has let go of its name lock
/// (which it does only after removing its socket), or its process has ended. The process
/// counts too because a new server may take the lock the moment the old one lets go of it: a
/// client that keeps calling starts one.
pub(super) fn stop(server: &ServerPaths) -> anyhow::Result<()> {
    let Some(mut conn) = common::connect(server)? else {
        println!("mcli-server: {}", common::not_running(server));
        return Ok(());
    };
    let pid = conn.call::<protocol::Status>(&NoParams {})?.pid;
    conn.call::<protocol::Shutdown>(&ShutdownParams { graceful: Some(true) })?;
    // Nothing more to ask: an open connection would be read on by the closing server.
    drop(conn);
    let wait = SHUTDOWN_GRACE + Duration::from_secs(5);
    let deadline = Instant::now() + wait;
    loop {
        if lockfile::lock_within(&server.lock, Duration::ZERO)?.is_some() {
            // The lock goes last, as the process ends; wait for the very end too.
            let end = Instant::now() + Duration::from_secs(2);
            while process_alive(pid) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(2));
            }
            break;
        }
        if !process_alive(pid) {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the server (pid {pid}) did not stop within {}s; `kill {pid}` ends it", wait.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("mcli-server: stopped the server (pid {pid})");
    Ok(())
}

/// Whether process `pid` still runs (a zombie, waiting to be reaped, does not).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}
