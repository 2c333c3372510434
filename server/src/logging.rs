//! Logging with `tracing` to standard error. A detached server's standard error is its log
//! file; that file is kept bounded: past a size it is renamed to `NAME.log.1` (replacing the
//! previous one) and a new file takes its place, on standard error too, so that even a panic
//! message lands in the current log. The new file is opened as the starter opened the first
//! (no symbolic link followed, a regular file of the user only), and rotation happens only when
//! standard error really is that file (a starter that could not open the log gave another).
//!
//! For service managers: under systemd (`JOURNAL_STREAM` names standard error) lines carry no
//! timestamp, since the journal adds its own; `--log-format json` writes one JSON object per
//! line for log shippers.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::prelude::*;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain lines (without the timestamp when the journal takes them)
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields)
    Json,
}

/// Starts logging: `RUST_LOG` when set (`LEVEL` or `TARGET=LEVEL`, comma-separated), else
/// debug or info. With `log_file`, standard error is that file and is rotated at
/// [`mcli_shared::paths::LOG_MAX_BYTES`].
pub fn init(debug: bool, log_file: Option<PathBuf>) {
    init_as(debug, log_file, Format::Text);
}

/// [`init`], writing lines in `format`.
pub fn init_as(debug: bool, log_file: Option<PathBuf>, format: Format) {
    let default = Targets::new().with_default(if debug { tracing::Level::DEBUG } else { tracing::Level::INFO });
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let parsed = rust_log.as_deref().map(str::parse::<Targets>);
    let filter = match &parsed {
        Some(Ok(targets)) => targets.clone(),
        _ => default,
    };
    let writer = match log_file.filter(|path| stderr_is(path)) {
        Some(path) => {
            let written = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
            BoxMakeWriter::new(RotatingStderr { state: Mutex::new(Rotation { path, written }) })
        }
        None => BoxMakeWriter::new(io::stderr),
    };
    let base = tracing_subscriber::fmt::layer().with_ansi(false).with_target(false).with_writer(writer);
    let layer: Box<dyn Layer<Registry> + Send + Sync> = match format {
        Format::Json => base.json().boxed(),
        Format::Text if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()) => {
            base.without_time().boxed()
        }
        Format::Text => base.boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
    if let (Some(value), Some(Err(err))) = (&rust_log, &parsed) {
        tracing::warn!("RUST_LOG={value:?} is not a log filter ({err}); logging at the default level");
    }
}

/// Whether standard error is the journal's stream: systemd sets `JOURNAL_STREAM` to its
/// `DEVICE:INODE`, which a process whose standard error was redirected since still inherits.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    let stderr = io::stderr().as_fd().try_clone_to_owned().and_then(|fd| std::fs::File::from(fd).metadata());
    stderr.is_ok_and(|meta| meta.dev() == dev && meta.ino() == ino)
}

/// Whether standard error is the file at `path` (the same device and inode).
fn stderr_is(path: &std::path::Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let stderr = io::stderr().as_fd().try_clone_to_owned().and_then(|fd| std::fs::File::from(fd).metadata());
    let (Ok(stderr), Ok(file)) = (stderr, std::fs::symlink_metadata(path)) else {
        return false;
    };
    stderr.dev() == file.dev() && stderr.ino() == file.ino()
}

struct RotatingStderr {
    state: Mutex<Rotation>,
}

struct Rotation {
    path: PathBuf,
    /// Bytes in the current file.
    written: u64,
}

impl Rotation {
    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        let file =
            mcli_shared::paths::open_own_file(&self.path, OpenOptions::new().append(true).create(true).mode(0o600))?;
        nix::unistd::dup2_stderr(&file)?;
        self.written = 0;
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingStderr {
    type Writer = RotatingWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RotatingWriter(self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One log line's writer, holding the rotation state so lines never interleave a rotation.
pub struct RotatingWriter<'a>(MutexGuard<'a, Rotation>);

impl Write for RotatingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = io::stderr().write(buf)?;
        self.0.written += n as u64;
        if self.0.written > mcli_shared::paths::LOG_MAX_BYTES {
            // Logging must never fail the server: a failed rotation just keeps writing.
            let _ = self.0.rotate();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
