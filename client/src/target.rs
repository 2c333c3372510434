//! Where the server is (its local socket, or the TCP address of a server file) and how to
//! reach it, starting a local server on demand.

use std::path::{Path, PathBuf};

use mcli_protocol::ServerFile;
use mcli_protocol::framing::Framing;
use mcli_shared::paths::{self, ServerPaths};

use crate::args::Cli;
use crate::autostart::{self, Starter};
use crate::connection::{ConnectError, Connection};
use crate::error::{ClientError, ServerFileError};

/// Where the server is.
pub enum Target {
    Socket(ServerPaths),
    Tcp { addr: String, token: String, file: PathBuf },
}

impl Target {
    /// The server the command line names: `--server-file`, else `--socket-name` in the
    /// runtime directory (which must be safe to use).
    pub fn from_cli(cli: &Cli) -> Result<Target, ClientError> {
        if let Some(file) = &cli.server_file {
            return Ok(Target::from_server_file(file)?);
        }
        let dir = paths::runtime_dir(paths::process_env);
        paths::check_runtime_dir(&dir)?;
        Ok(Target::Socket(ServerPaths::new(dir, &cli.socket_name)?))
    }

    fn from_server_file(file: &Path) -> Result<Target, ServerFileError> {
        let text =
            paths::read_server_file(file).map_err(|source| ServerFileError::Read { path: file.to_owned(), source })?;
        let info =
            ServerFile::parse(&text).map_err(|source| ServerFileError::Parse { path: file.to_owned(), source })?;
        let Some(addr) = info.tcp else {
            return Err(ServerFileError::NoTcp { path: file.to_owned() });
        };
        Ok(Target::Tcp { addr, token: info.token, file: file.to_owned() })
    }

    /// Connects, starting a local server when none answers and `start` says so. Without
    /// `start`, a missing server is [`ClientError::NoServer`].
    pub fn connect(&self, start: bool, quiet: bool, framing: Framing) -> Result<Connection, ClientError> {
        let result = match self {
            Target::Socket(server) => Connection::connect_server(server),
            Target::Tcp { addr, token, .. } => Connection::connect_tcp(addr, token, framing),
        };
        match (result, self) {
            (Ok(conn), Target::Socket(server)) => Ok(crate::upgrade::match_release(server, conn, quiet)?),
            (Ok(conn), _) => Ok(conn),
            (Err(ConnectError::NoServer { .. }), Target::Socket(server)) if start => {
                let (conn, started) = autostart::connect_or_start(server, &Starter::from_env(server))?;
                if let Some(started) = started
                    && !quiet
                {
                    eprintln!("mcli-client: started mcli-server (pid {})", started.pid);
                }
                Ok(conn)
            }
            (Err(ConnectError::NoServer { .. }), Target::Tcp { addr, file, .. }) if start => {
                Err(ClientError::NoRemoteServer { addr: addr.clone(), file: file.clone() })
            }
            (Err(ConnectError::NoServer { .. }), _) => Err(ClientError::NoServer),
            (Err(err), _) => Err(err.into()),
        }
    }
}
