//! Writing the server file `NAME.json` (its shape is `mcli_protocol::ServerFile`): atomically
//! (temp file, mode 0600, rename) once the server listens.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context as _;
use mcli_protocol::{PROTOCOL_VERSION, ServerFile};
use mcli_shared::paths::ServerPaths;

/// The server file of this process.
pub fn new(paths: &ServerPaths, token: String, tcp: Option<String>, http: Option<String>) -> ServerFile {
    ServerFile {
        pid: std::process::id(),
        version: mcli_shared::VERSION.to_owned(),
        protocol: PROTOCOL_VERSION,
        socket: paths.socket.display().to_string(),
        tcp,
        http,
        token,
        listener_pid: None,
    }
}

/// A fresh random token: 32 bytes from the OS, hex-encoded.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("cannot get random bytes for the token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn write(paths: &ServerPaths, file: &ServerFile) -> anyhow::Result<()> {
    let tmp = paths.server_file.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(file)?;
    let _ = fs::remove_file(&tmp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    fs::rename(&tmp, &paths.server_file).with_context(|| format!("cannot write {}", paths.server_file.display()))?;
    Ok(())
}
