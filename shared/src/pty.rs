//! A pseudo-terminal for a command whose client cannot pass its own terminal (TCP, editors):
//! the command runs on the slave side as its controlling terminal, its output is read from the
//! master side as one stream, its input is written to the master, and the window size is set
//! on the master (the kernel then sends SIGWINCH to the command's foreground group).
//!
//! The server forbids `unsafe`, so the command is made a session leader with the slave as its
//! controlling terminal by util-linux's `setsid --ctty` rather than in a `pre_exec` hook.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

/// Both sides of a new pseudo-terminal.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    /// Opens a pseudo-terminal of `rows` x `cols`.
    pub fn open(rows: u16, cols: u16) -> io::Result<Pty> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(std::ffi::OsStr::from_bytes(name.as_bytes()))?;
        resize(&master, rows, cols)?;
        Ok(Pty { master, slave: OwnedFd::from(slave) })
    }
}

/// Sets the window size of the terminal of `master`.
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    Ok(tcsetwinsize(master, size)?)
}

/// `setsid`, which gives the command its session and controlling terminal; `None` when it is
/// not installed (util-linux).
pub fn setsid_program() -> Option<PathBuf> {
    ["/usr/bin/setsid", "/bin/setsid", "/usr/local/bin/setsid"].iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Reads what the command writes to its terminal, on a blocking thread, handing each piece to
/// `deliver` (false: nobody takes it any more) until the terminal is closed (every slave
/// descriptor gone: EIO) or `stop` is set: a process left behind that keeps the terminal open
/// does not keep the reader. The master is closed when it returns, which hangs the terminal up
/// for what is left on it, as when an ssh session ends.
pub fn pump_master(
    master: OwnedFd,
    stop: Arc<AtomicBool>,
    mut deliver: impl FnMut(Bytes) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let stopped = || stop.load(Ordering::Relaxed);
        while let Some(n) = crate::streams::read_when_ready(master.as_fd(), &mut buf, stopped) {
            if !deliver(Bytes::copy_from_slice(&buf[..n])) {
                return;
            }
        }
    })
}

/// Writes `data` to the terminal of `master` (what the user types), off the async threads.
pub async fn write_all(master: &OwnedFd, data: Bytes) -> io::Result<()> {
    let file = File::from(master.as_fd().try_clone_to_owned()?);
    tokio::task::spawn_blocking(move || (&file).write_all(&data)).await.unwrap_or_else(|e| Err(io::Error::other(e)))
}
