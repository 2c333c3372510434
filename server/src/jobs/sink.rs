//! [`JobSink`]: a detached job's output, appended to its `stdout` and `stderr` files as it
//! comes, byte for byte, up to the per-job limit (`server.job_output_max`, both streams
//! together): past it the head is kept, a line marks the cut, and the rest is read and dropped
//! so that the job runs on. Followers are told after each write.

use mcli_protocol::Stream;
use mcli_shared::execution::OutputSink;
use mcli_shared::runner::Chunk;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::watch;

use super::store::Progress;

pub struct JobSink {
    stdout: tokio::fs::File,
    stderr: tokio::fs::File,
    /// Bytes written so far, and the most that may be.
    written: u64,
    limit: u64,
    /// Set once the limit was reached.
    pub truncated: bool,
    progress: watch::Sender<Progress>,
}

impl JobSink {
    pub fn new(
        stdout: tokio::fs::File,
        stderr: tokio::fs::File,
        limit: u64,
        progress: watch::Sender<Progress>,
    ) -> JobSink {
        JobSink { stdout, stderr, written: 0, limit, truncated: false, progress }
    }

    async fn write(&mut self, stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let file = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        file.write_all(bytes).await?;
        // Tokio's file keeps a write in flight until flushed: followers must find it on disk.
        file.flush().await
    }
}

/// The line that marks where a job's output was cut.
pub fn cut_marker(limit: u64) -> String {
    format!("\n[mcli: output cut here: the job wrote more than {limit} bytes (server.job_output_max)]\n")
}

impl OutputSink for JobSink {
    async fn accept(&mut self, chunk: Chunk) -> bool {
        if self.truncated {
            return true;
        }
        let room = self.limit.saturating_sub(self.written);
        let take = (chunk.data.len() as u64).min(room) as usize;
        let mut result = self.write(chunk.stream, &chunk.data[..take]).await;
        self.written += take as u64;
        if take < chunk.data.len() {
            self.truncated = true;
            let marker = cut_marker(self.limit);
            result = result.and(self.write(chunk.stream, marker.as_bytes()).await);
            self.written += marker.len() as u64;
        }
        if let Err(err) = result {
            // A full disk: the job runs on, its output is lost from here, as with a cut.
            tracing::warn!(%err, "cannot write a job's output; dropping the rest");
            self.truncated = true;
        }
        let written = self.written;
        self.progress.send_modify(|p| p.bytes = written);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sink_in(dir: &std::path::Path, limit: u64) -> (JobSink, watch::Receiver<Progress>) {
        let open = |name: &str| {
            let path = dir.join(name);
            async move { tokio::fs::File::create(path).await.unwrap() }
        };
        let (tx, rx) = watch::channel(Progress::default());
        (JobSink::new(open("stdout").await, open("stderr").await, limit, tx), rx)
    }

    #[tokio::test]
    async fn keeps_the_head_marks_the_cut_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, progress) = sink_in(dir.path(), 10).await;
        assert!(sink.accept(Chunk { stream: Stream::Stdout, data: "abcdef".into() }).await);
        assert!(sink.accept(Chunk { stream: Stream::Stderr, data: "ghijkl".into() }).await);
        assert!(sink.accept(Chunk { stream: Stream::Stdout, data: "more".into() }).await);
        assert!(sink.truncated);
        let stdout = std::fs::read(dir.path().join("stdout")).unwrap();
        let stderr = String::from_utf8(std::fs::read(dir.path().join("stderr")).unwrap()).unwrap();
        assert_eq!(stdout, b"abcdef");
        assert_eq!(stderr, format!("ghij{}", cut_marker(10)));
        assert_eq!(progress.borrow().bytes, 10 + cut_marker(10).len() as u64);
    }
}
