//! Following a job: its output from an offset out of its files, then, while it runs, what it
//! writes as it writes it (woken by its `watch`), then how it ended. Used by `attach` and by
//! the HTTP bridge's `GET /jobs/ID/output`.

use std::io::SeekFrom;

use mcli_protocol::Stream;
use mcli_shared::runner::Chunk;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::sync::CancellationToken;

use super::READ_CHUNK;
use super::meta::Meta;
use super::store::{Jobs, Lookup};

/// How often a job run by another server is looked at again.
const ELSEWHERE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a follow ended without the job's end.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("no job {id}")]
    Missing { id: u64, pruned: bool },
    /// The follower went away (or asked to stop): the job runs on.
    #[error("stopped following job {0}; it runs on")]
    Stopped(u64),
    #[error("cannot read the output of job {id}: {source}")]
    Io { id: u64, source: std::io::Error },
}

/// One follow of one job.
pub struct Follow<'a> {
    pub jobs: &'a Jobs,
    pub id: u64,
    /// Bytes of stdout and of stderr to skip.
    pub offsets: (u64, u64),
    /// Stop at the end of what is written now, instead of following a running job.
    pub live: bool,
}

impl Follow<'_> {
    /// Hands the output to `emit` (which returns false when nobody takes it any more) and
    /// returns the job as it is at the end: ended, or still running when not `live`.
    pub async fn run<F, Fut>(self, mut emit: F, stop: &CancellationToken) -> Result<Meta, FollowError>
    where
        F: FnMut(Chunk) -> Fut,
        Fut: Future<Output = bool>,
    {
        let id = self.id;
        let io = |source| FollowError::Io { id, source };
        let mut progress = self.jobs.progress(id);
        self.meta().await?;
        let dir = self.jobs.job_dir(id);
        let mut files =
            [open_at(dir.join("stdout"), self.offsets.0).await, open_at(dir.join("stderr"), self.offsets.1).await];
        loop {
            // Whether it had ended is read before the files: everything it wrote is there then.
            let ended = match progress.as_mut() {
                Some(progress) => progress.borrow_and_update().ended,
                None => !self.runs_elsewhere().await?,
            } || !self.live;
            let mut any = false;
            for (file, stream) in files.iter_mut().zip([Stream::Stdout, Stream::Stderr]) {
                let Some(file) = file else { continue };
                while let Some(data) = read_some(file).await.map_err(io)? {
                    any = true;
                    if !emit(Chunk { stream, data }).await {
                        return Err(FollowError::Stopped(id));
                    }
                }
            }
            if ended {
                return self.meta().await;
            }
            if !any {
                match progress.as_mut() {
                    Some(progress) => tokio::select! {
                        changed = progress.changed() => if changed.is_err() { continue },
                        () = stop.cancelled() => return Err(FollowError::Stopped(id)),
                    },
                    // Run by the server this one took over from: its files are all there is.
                    None => tokio::select! {
                        () = tokio::time::sleep(ELSEWHERE_POLL) => {}
                        () = stop.cancelled() => return Err(FollowError::Stopped(id)),
                    },
                }
            }
        }
    }

    /// Whether the job still runs on another live server: the one this server took over from
    /// (`restart`), which finishes its running jobs before it exits.
    async fn runs_elsewhere(&self) -> Result<bool, FollowError> {
        let meta = self.meta().await?;
        Ok(meta.is_running() && super::recover::server_alive(meta.server_pid))
    }

    /// The job's `meta.json`, or why there is none.
    async fn meta(&self) -> Result<Meta, FollowError> {
        let (id, jobs_dir) = (self.id, self.jobs.root().to_owned());
        let lookup = tokio::task::spawn_blocking(move || Jobs::new(jobs_dir).lookup(id))
            .await
            .map_err(|e| FollowError::Io { id, source: std::io::Error::other(e) })?
            .map_err(|source| FollowError::Io { id, source })?;
        match lookup {
            Lookup::Found(meta, ..) if meta.pruned => Err(FollowError::Missing { id, pruned: true }),
            Lookup::Found(meta, ..) => Ok(*meta),
            Lookup::Missing { pruned } => Err(FollowError::Missing { id, pruned }),
        }
    }
}

/// A job's output file, at `offset`; `None` when it is gone (its output pruned meanwhile).
async fn open_at(path: std::path::PathBuf, offset: u64) -> Option<tokio::fs::File> {
    let mut file = tokio::fs::File::open(path).await.ok()?;
    file.seek(SeekFrom::Start(offset)).await.ok()?;
    Some(file)
}

/// The next piece of a file, `None` at its end for now.
async fn read_some(file: &mut tokio::fs::File) -> std::io::Result<Option<bytes::Bytes>> {
    let mut buf = vec![0u8; READ_CHUNK];
    let n = file.read(&mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some(bytes::Bytes::from(buf)))
}
