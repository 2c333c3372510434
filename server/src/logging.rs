//! Logging with `tracing` to standard error. A detached server's standard error is its log
//! file; that file is kept bounded: past a size it is renamed to `NAME.log.1` (replacing the
//! previous one) and a new file takes its place, on standard error too, so that even a panic
//! message lands in the current log.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Starts logging: `RUST_LOG` when set, else debug or info. With `log_file`, standard error is
/// that file and is rotated at [`mcli_shared::paths::LOG_MAX_BYTES`].
pub fn init(debug: bool, log_file: Option<PathBuf>) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_target(false);
    let _ = match log_file {
        Some(path) => {
            let written = std::fs::metadata(&path).map_or(0, |m| m.len());
            let writer = RotatingStderr { state: Mutex::new(Rotation { path, written }) };
            builder.with_writer(writer).try_init()
        }
        None => builder.with_writer(io::stderr).try_init(),
    };
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
        let file = OpenOptions::new().append(true).create(true).mode(0o600).open(&self.path)?;
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
