//! The server file `NAME.json`: how clients find and authenticate to a running server. The
//! server writes it once it listens; clients and `mcli-server token` read it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFile {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    /// The local socket's path.
    pub socket: String,
    /// The TCP address listened on (`--tcp`), if any.
    pub tcp: Option<String>,
    /// The HTTP bridge's address, if it is on.
    pub http: Option<String>,
    /// The secret that TCP and HTTP clients present.
    pub token: String,
    /// The process that made the socket listen, when that is not `pid`: a service manager
    /// that passed the socket on, or the server this one took over from. The kernel names that
    /// process as the socket's peer (SO_PEERCRED), so a client accepts it as well as `pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_pid: Option<u32>,
}

impl ServerFile {
    /// Whether `peer`, the pid the kernel gives for the socket's peer, is this server.
    pub fn is_listener(&self, peer: u32) -> bool {
        peer == self.pid || self.listener_pid == Some(peer)
    }

    /// Decodes a server file's text.
    pub fn parse(text: &str) -> serde_json::Result<ServerFile> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape() {
        let text = r#"{"pid": 123, "version": "0.1.0", "protocol": 1, "socket": "/run/mcli/server.sock",
                       "tcp": "127.0.0.1:4000", "http": null, "token": "abc"}"#;
        let file = ServerFile::parse(text).unwrap();
        assert_eq!(file.pid, 123);
        assert_eq!(file.tcp.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(file.http, None);
        assert_eq!(file.token, "abc");
    }
}
