//! Per-user paths and their safety checks.
//!
//! The runtime directory holds the sockets, lock files and server files. Anyone who can write to
//! it can impersonate the server, so both binaries refuse one that is a symlink, belongs to
//! another user, or is open to group or others, and say how to fix it.
//!
//! The files in it and in the state directory are opened through [`open_own_file`] and read
//! through [`read_own_file`]: never through a symbolic link, never blocking on a FIFO, only a
//! regular file of this user, and (when read) only up to a size.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The server name used when none is given.
pub const DEFAULT_SERVER_NAME: &str = "server";

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error(
        "runtime dir {0} is a symbolic link; mcli will not follow it. Remove it (`rm {0}`) or point MCLI_RUNTIME_DIR at a private directory"
    )]
    Symlink(PathBuf),
    #[error("runtime dir {0} is not a directory; remove it or point MCLI_RUNTIME_DIR elsewhere")]
    NotADirectory(PathBuf),
    #[error(
        "runtime dir {path} belongs to uid {owner}, not to you (uid {me}); point MCLI_RUNTIME_DIR at a directory you own"
    )]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("runtime dir {path} is open to group or others (mode {mode:04o}); run `chmod 700 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot create runtime dir {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot inspect runtime dir {path}: {source}")]
    Inspect { path: PathBuf, source: io::Error },
    #[error("invalid server name `{0}`: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.`")]
    BadServerName(String),
}

/// Where the runtime directory is, from the environment: `$MCLI_RUNTIME_DIR`, else
/// `$XDG_RUNTIME_DIR/mcli`, else `/tmp/mcli-$UID`.
pub fn runtime_dir(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(dir) = env("MCLI_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("mcli");
    }
    PathBuf::from(format!("/tmp/mcli-{}", nix::unistd::getuid().as_raw()))
}

/// Checks an existing runtime directory. `Ok(false)` means it does not exist.
pub fn check_runtime_dir(path: &Path) -> Result<bool, PathError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(PathError::Inspect { path: path.to_owned(), source });
        }
    };
    if meta.file_type().is_symlink() {
        return Err(PathError::Symlink(path.to_owned()));
    }
    if !meta.is_dir() {
        return Err(PathError::NotADirectory(path.to_owned()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(PathError::WrongOwner { path: path.to_owned(), owner: meta.uid(), me });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PathError::TooOpen { path: path.to_owned(), mode });
    }
    Ok(true)
}

/// Creates the runtime directory (mode 0700) when it is missing, then checks it.
pub fn ensure_runtime_dir(path: &Path) -> Result<(), PathError> {
    if check_runtime_dir(path)? {
        return Ok(());
    }
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(PathError::Create { path: path.to_owned(), source });
        }
    }
    if check_runtime_dir(path)? {
        Ok(())
    } else {
        Err(PathError::Create {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "it vanished after creation"),
        })
    }
}

/// Checks a server name: it becomes part of file names, so it must be a plain word.
pub fn validate_server_name(name: &str) -> Result<(), PathError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(PathError::BadServerName(name.to_owned())) }
}

/// The files of one named server in the runtime directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPaths {
    pub name: String,
    pub dir: PathBuf,
    /// The local socket the server listens on.
    pub socket: PathBuf,
    /// Held (flock) by the running server for its whole life: whoever holds it owns the name and
    /// may replace a stale socket file.
    pub lock: PathBuf,
    /// Held while a server is being started, so that racing starters start exactly one.
    pub start_lock: PathBuf,
    /// The server file: pid, version, addresses and token, written once the server listens.
    pub server_file: PathBuf,
}

impl ServerPaths {
    pub fn new(dir: PathBuf, name: &str) -> Result<Self, PathError> {
        validate_server_name(name)?;
        Ok(ServerPaths {
            name: name.to_owned(),
            socket: dir.join(format!("{name}.sock")),
            lock: dir.join(format!("{name}.lock")),
            start_lock: dir.join(format!("{name}.start.lock")),
            server_file: dir.join(format!("{name}.json")),
            dir,
        })
    }
}

/// The most a server file may hold: a real one is a few hundred bytes.
pub const SERVER_FILE_MAX_BYTES: u64 = 64 * 1024;

/// Opens the file at `path` with `options` (which must set no custom flags), as every file mcli
/// creates or reads in its runtime and state dirs is opened: a symbolic link is refused instead
/// of followed (it could point anywhere, or at nothing, and create its target), a FIFO does not
/// block the open, and what was opened must be a regular file of this user. The error names
/// what is wrong and how to fix it.
pub fn open_own_file(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let file = match options.custom_flags(flags.bits()).open(path) {
        Ok(file) => file,
        // O_NOFOLLOW fails with ELOOP on a symbolic link; a FIFO without a reader, opened to
        // write without blocking, with ENXIO.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Err(refused(path, "a symbolic link")),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
            let what = fs::symlink_metadata(path).map_or("not a regular file", |m| kind_of(m.file_type()));
            return Err(refused(path, what));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(path, kind_of(meta.file_type())));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        let message = format!(
            "it belongs to uid {}, not to you (uid {me}); remove it (`rm {}`) and try again",
            meta.uid(),
            path.display()
        );
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, message));
    }
    // A regular file ignores O_NONBLOCK; clear it anyway, so that no one inherits a surprise.
    let status = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(status - OFlag::O_NONBLOCK))?;
    Ok(file)
}

/// What a file that is not a regular file is, for a message.
fn kind_of(kind: fs::FileType) -> &'static str {
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a device"
    }
}

/// The error for a file that is `what` instead of a regular file.
fn refused(path: &Path, what: &str) -> io::Error {
    let follow = if what == "a symbolic link" { ", which mcli does not follow" } else { ", not a regular file" };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}{follow}; remove it (`rm {}`) and try again", path.display()),
    )
}

/// Reads the file at `path`, opened as [`open_own_file`] does, as text of at most `max` bytes:
/// a file that has grown past that (or a device that never ends) is refused, not read to the end.
pub fn read_own_file(path: &Path, max: u64) -> io::Result<String> {
    let file = open_own_file(path, OpenOptions::new().read(true))?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        let message = format!("it is larger than {max} bytes; remove it (`rm {}`) and try again", path.display());
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    }
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// Reads the server file `NAME.json` at `path` (the one way every reader does: the client's
/// `-f`, `mcli-server token`, the peer check of a connection, the name-lock wait), for
/// `mcli_protocol::ServerFile::parse`.
pub fn read_server_file(path: &Path) -> io::Result<String> {
    read_own_file(path, SERVER_FILE_MAX_BYTES)
}

/// The state directory: `$XDG_STATE_HOME/mcli`, else `~/.local/state/mcli`.
pub fn state_dir(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(dir) = env("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("mcli");
    }
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("mcli")
}

/// A server log past this size is rotated to `NAME.log.1`.
pub const LOG_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The server log of server NAME in the state directory.
pub fn log_file(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}.log"))
}

/// The config directory: `$XDG_CONFIG_HOME/mcli`, else `~/.config/mcli`.
pub fn config_dir(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(dir) = env("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("mcli");
    }
    dirs::config_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("/etc"))
        .join("mcli")
}

/// Reads a variable from the process environment; the default for the `env` parameters above.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn runtime_dir_precedence() {
        let both = [("MCLI_RUNTIME_DIR", "/a"), ("XDG_RUNTIME_DIR", "/b")];
        assert_eq!(runtime_dir(env_of(&both)), PathBuf::from("/a"));
        assert_eq!(runtime_dir(env_of(&both[1..])), PathBuf::from("/b/mcli"));
        let uid = nix::unistd::getuid().as_raw();
        assert_eq!(runtime_dir(env_of(&[])), PathBuf::from(format!("/tmp/mcli-{uid}")));
    }

    #[test]
    fn creates_private_dir_and_refuses_open_or_linked_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        ensure_runtime_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_runtime_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("mode 0755") && err.contains("chmod 700"), "{err}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = check_runtime_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn own_files_are_opened_without_following_links_or_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let create = || OpenOptions::new().append(true).create(true).clone();
        let err = open_own_file(&link, &mut create()).unwrap_err().to_string();
        assert!(err.contains("symbolic link") && err.contains("rm "), "{err}");
        assert!(!target.exists(), "a dangling link's target is not created");

        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read_server_file(&fifo).unwrap_err().to_string();
        assert!(err.contains("a FIFO, not a regular file"), "{err}");
        let err = open_own_file(&fifo, &mut create()).unwrap_err().to_string();
        assert!(err.contains("a FIFO, not a regular file"), "{err}");

        let big = tmp.path().join("big");
        fs::write(&big, vec![b' '; SERVER_FILE_MAX_BYTES as usize + 1]).unwrap();
        let err = read_server_file(&big).unwrap_err().to_string();
        assert!(err.contains("larger than 65536 bytes"), "{err}");
        fs::write(&big, "{}").unwrap();
        assert_eq!(read_server_file(&big).unwrap(), "{}");
        assert!(read_server_file(&tmp.path().join("missing")).unwrap_err().kind() == io::ErrorKind::NotFound);
    }

    #[test]
    fn server_names_are_plain_words() {
        for good in ["server", "work-2", "a.b_c"] {
            validate_server_name(good).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "x y", &"n".repeat(65)] {
            assert!(validate_server_name(bad).is_err(), "{bad}");
        }
    }
}
