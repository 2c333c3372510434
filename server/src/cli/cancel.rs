//! `mcli-server cancel ID`: cancels a running execution (a detached job, or any call) by its id.

use std::process::ExitCode;

use mcli_protocol::{self as protocol, CancelParams};
use mcli_shared::paths::ServerPaths;

use super::common;

pub(super) fn run(server: &ServerPaths, id: u64) -> anyhow::Result<ExitCode> {
    let Some(mut conn) = common::connect(server)? else {
        return Ok(super::fail(false, &common::not_running(server)));
    };
    if conn.call::<protocol::Cancel>(&CancelParams { id })?.ok {
        println!("cancelled {id}");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(super::fail(false, &format!("nothing runs with id {id} (`mcli-server jobs` lists the jobs)")))
    }
}
