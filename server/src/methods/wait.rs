//! `wait`: until every one of some detached jobs has ended (or, with `any`, one has), or a
//! `timeout` has passed (a client showing progress asks again); answers each job as it is.

use std::time::Duration;

use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::{JobInfo, Seconds, WaitParams, WaitResult, code};

use super::attach::job_not_found;
use super::error;
use crate::jobs::Lookup;
use crate::state::State;
use crate::transport::dispatch::RequestCtx;

/// The most ids one `wait` takes.
const MAX_IDS: usize = 1000;

pub async fn wait(params: WaitParams, state: State, request: RequestCtx) -> Result<WaitResult, ErrorObjectOwned> {
    if params.ids.is_empty() || params.ids.len() > MAX_IDS {
        return Err(error(code::INVALID_PARAMS, format!("invalid params: `ids` must name 1 to {MAX_IDS} jobs")));
    }
    let timeout = match params.timeout.map(Seconds::new).transpose() {
        Ok(timeout) => timeout.map(Seconds::duration),
        Err(_) => return Err(error(code::INVALID_PARAMS, "invalid params: `timeout` must be 0 to 1e9 seconds")),
    };
    let deadline = tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(1_000_000_000));
    loop {
        // Asked for before looking, so that an end between the look and the wait wakes it.
        let ended = state.jobs.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let jobs = look(&state, &params.ids).await?;
        let finished = jobs.iter().filter(|j| j.state != "running").count();
        let done = if params.any { finished > 0 } else { finished == jobs.len() };
        if done {
            return Ok(WaitResult { jobs, done });
        }
        tokio::select! {
            () = &mut ended => {}
            () = tokio::time::sleep_until(deadline) => return Ok(WaitResult { jobs, done }),
            () = request.cancel.cancelled() => return Err(error(code::INTERNAL_ERROR, "the wait was cancelled")),
        }
    }
}

/// The jobs `ids` name, as they are now.
async fn look(state: &State, ids: &[u64]) -> Result<Vec<JobInfo>, ErrorObjectOwned> {
    let (found_state, ids) = (state.clone(), ids.to_vec());
    let found = tokio::task::spawn_blocking(move || {
        ids.iter().map(|id| (*id, found_state.jobs.lookup(*id))).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| error(code::INTERNAL_ERROR, format!("internal error: {e}")))?;
    found
        .into_iter()
        .map(|(id, lookup)| match lookup {
            Ok(Lookup::Found(meta, out, err)) => Ok(meta.to_info(out, err)),
            Ok(Lookup::Missing { pruned }) => Err(job_not_found(id, pruned)),
            Err(err) => Err(error(code::INTERNAL_ERROR, format!("cannot read job {id}: {err}"))),
        })
        .collect()
}
