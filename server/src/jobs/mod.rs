//! Detached jobs: `execute` with `detach: true` runs a command in a task of the server's
//! lifecycle rather than of the connection, and its output goes to files under the state dir
//! (`STATE/NAME.jobs/ID/{stdout,stderr,meta.json}`) instead of to a client. `attach`, `wait`
//! and `jobs` read those files, so a job and its output outlive the client, and, on disk, the
//! server: a new server marks what a dead one left running as `interrupted` and ends it
//! ([`recover`]).
//!
//! What is in memory per job is a `watch` of how many bytes were written and whether the job
//! ended, so that followers re-read the files when there is more: nothing grows with output.

mod elsewhere;
mod follow;
mod meta;
mod recover;
mod run;
mod sink;
mod store;

pub use elsewhere::{answer_cancel_requests, cancel_elsewhere};
pub use follow::{Follow, FollowError};
pub use meta::Meta;
pub use recover::recover;
pub use run::detach;
pub use store::{Jobs, Lookup};

/// Chunks read from a job's files and sent to a follower at a time.
pub const READ_CHUNK: usize = 64 * 1024;
