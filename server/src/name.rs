//! Owning a server name: the lock, the socket and the server file in the runtime dir, and
//! keeping them. A tmp cleaner or a stray `rm` may delete the socket, the server file (or the
//! whole runtime dir) under a running server, or put something else in their place; the guard
//! notices within a second and puts them back, so clients keep reaching the same server instead
//! of starting a second one, and `-f` and `mcli-server token` keep finding the server file. If
//! another live server has meanwhile taken the name, this one steps aside and exits.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use interprocess::os::unix::uds_local_socket::tokio::Listener;
use mcli_shared::lockfile;
use mcli_shared::paths::{self, ServerPaths};

use crate::server_file;
use crate::transport::socket;

/// How often the name's files are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A file's identity, to tell it from a file later put at the same path: its device and inode,
/// and also its type and birth time, because a file system may give a file just deleted's inode
/// to the next one created (ext4 does), such as a FIFO put in place of the server file. Not its
/// change time: a `chmod` or a hard link changes that, and is no reason to bind the socket anew
/// or to take the name lock again (a lock file chmod'ed would then look taken by another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    kind: u32,
    born: Option<std::time::SystemTime>,
    /// For the server file, which only this server writes: its size and modification time,
    /// which tell a rewritten file where there is no birth time.
    written: Option<(u64, i64, i64)>,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        std::fs::symlink_metadata(path).ok().map(|meta| FileId::from(&meta))
    }

    /// [`FileId::of`], and what was written to the file.
    fn of_contents(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(FileId { written: Some((meta.len(), meta.mtime(), meta.mtime_nsec())), ..FileId::from(&meta) })
    }
}

impl From<&std::fs::Metadata> for FileId {
    fn from(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            kind: meta.mode() & nix::libc::S_IFMT,
            born: meta.created().ok(),
            written: None,
        }
    }
}

/// What a check found.
pub enum Check {
    /// All in place.
    Intact,
    /// The socket was gone or replaced and is bound anew: accept on this listener from now on.
    Rebound(Listener),
    /// Another live server owns the name now.
    Lost,
}

pub struct NameGuard {
    paths: ServerPaths,
    /// The name lock; `None` while the server this one took over from still holds it (it lets
    /// go when it exits, and this guard takes it then).
    lock: Option<File>,
    /// Whether the socket file is this server's to remove at exit: not when a service manager
    /// made it (it stays for the next activation), nor once handed over to a successor.
    owns_socket: bool,
    lock_id: Option<FileId>,
    socket_id: Option<FileId>,
    file_id: Option<FileId>,
    /// What the server file says; written again with the socket.
    file: mcli_protocol::ServerFile,
}

impl NameGuard {
    /// Takes the name with the held `lock`: replaces a socket file left by a dead server, binds
    /// the socket and writes the server file.
    pub fn bind(
        paths: ServerPaths,
        lock: File,
        file: mcli_protocol::ServerFile,
    ) -> anyhow::Result<(NameGuard, Listener)> {
        let mut guard = NameGuard {
            lock_id: FileId::of(&paths.lock),
            paths,
            lock: Some(lock),
            owns_socket: true,
            socket_id: None,
            file_id: None,
            file,
        };
        let listener = guard.bind_socket()?;
        Ok((guard, listener))
    }

    /// Takes the name with a socket that is already listening at the name's path: one a service
    /// manager made (`owns_socket` false), or one handed over by the server this one replaces
    /// (which still holds the name lock: `lock` is `None` until it exits).
    pub fn adopt(
        paths: ServerPaths,
        lock: Option<File>,
        mut file: mcli_protocol::ServerFile,
        listener: &Listener,
        owns_socket: bool,
    ) -> anyhow::Result<NameGuard> {
        let listening = listener.inner().local_addr().ok();
        let at = listening.as_ref().and_then(|a| a.as_pathname()).map(Path::to_path_buf);
        let same_file = match (at.as_deref().and_then(FileId::of), FileId::of(&paths.socket)) {
            (Some(listening), Some(expected)) => listening == expected,
            _ => false,
        };
        if !same_file {
            let at = at.map_or_else(|| "an unnamed socket".to_owned(), |p| p.display().to_string());
            anyhow::bail!(
                "the socket handed over listens at {at}, but clients look for {}; make the service manager listen there (or set MCLI_RUNTIME_DIR)",
                paths.socket.display()
            );
        }
        file.listener_pid = socket::listening_pid(listener).filter(|pid| *pid != file.pid);
        let lock_id = FileId::of(&paths.lock);
        let socket_id = FileId::of(&paths.socket);
        let mut guard = NameGuard { paths, lock, lock_id, owns_socket, socket_id, file_id: None, file };
        guard.write_file()?;
        Ok(guard)
    }

    /// Writes the HTTP bridge's new address (or none) into the server file.
    pub fn set_http(&mut self, http: Option<String>) {
        if self.file.http != http {
            self.file.http = http;
            if let Err(err) = self.write_file() {
                tracing::warn!("cannot write the server file: {err:#}");
            }
        }
    }

    /// Leaves the socket file, which a successor now listens on, in place at exit.
    pub fn disown_socket(&mut self) {
        self.owns_socket = false;
    }

    /// Binds the socket, writing the server file first: a client checks that what answers on
    /// the socket is the process the server file names, so the file must name this one before
    /// any client can connect.
    fn bind_socket(&mut self) -> anyhow::Result<Listener> {
        // A socket bound here names this process as its peer.
        self.file.listener_pid = None;
        self.owns_socket = true;
        self.write_file()?;
        let paths = &self.paths;
        remove_if_present(&paths.socket).context("removing the stale socket file")?;
        let listener =
            socket::bind(&paths.socket).with_context(|| format!("cannot listen on {}", paths.socket.display()))?;
        // Only now, with it in place: a failure above leaves the next check to try again.
        self.socket_id = FileId::of(&paths.socket);
        Ok(listener)
    }

    fn write_file(&mut self) -> anyhow::Result<()> {
        server_file::write(&self.paths, &self.file)?;
        self.file_id = FileId::of_contents(&self.paths.server_file);
        Ok(())
    }

    /// Checks that the name's files are still this server's, repairing what it can.
    pub fn check(&mut self) -> anyhow::Result<Check> {
        if self.lock.is_none() {
            // The server this one took over from holds the name until it exits: its files are
            // this server's only from then on.
            match lockfile::lock_within(&self.paths.lock, Duration::ZERO)? {
                Some(lock) => {
                    self.lock = Some(lock);
                    self.lock_id = FileId::of(&self.paths.lock);
                    tracing::info!("the previous server has exited; this one holds the name");
                }
                None => return Ok(Check::Intact),
            }
        }
        if FileId::of(&self.paths.socket) == self.socket_id && self.socket_id.is_some() {
            if FileId::of_contents(&self.paths.server_file) != self.file_id || self.file_id.is_none() {
                tracing::warn!(file = %self.paths.server_file.display(), "the server file was removed or replaced; writing it anew");
                self.write_file()?;
            }
            return Ok(Check::Intact);
        }
        if FileId::of(&self.paths.lock) != self.lock_id {
            // The lock file went too (the runtime dir was cleaned): take the name again, unless a
            // live server took it meanwhile.
            paths::ensure_runtime_dir(&self.paths.dir)?;
            match lockfile::lock_within(&self.paths.lock, Duration::ZERO)? {
                Some(lock) => {
                    self.lock = Some(lock);
                    self.lock_id = FileId::of(&self.paths.lock);
                }
                None => return Ok(Check::Lost),
            }
        }
        tracing::warn!(socket = %self.paths.socket.display(), "the socket file was removed or replaced; listening anew");
        Ok(Check::Rebound(self.bind_socket()?))
    }

    /// Removes the socket and server file if they are still this server's; returns the name
    /// lock (if this server got to hold it), to be dropped when the server has finished.
    pub fn release(self) -> Option<File> {
        if self.owns_socket && self.socket_id.is_some() && FileId::of(&self.paths.socket) == self.socket_id {
            let _ = remove_if_present(&self.paths.socket);
        }
        if self.file_id.is_some() && FileId::of_contents(&self.paths.server_file) == self.file_id {
            let _ = remove_if_present(&self.paths.server_file);
        }
        self.lock
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
