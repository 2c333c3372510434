//! `mcli-client --stdio`: joins an editor's standard input and output to the shared server, so
//! every editor talks to one warm server. Bytes pass through untouched (the server detects the
//! framing). When the editor closes its side, the bridge half-closes the connection: replies
//! still on their way come through, then the server closes and the bridge ends. If the bridge
//! itself is killed, the server sees the hang-up and cancels what the editor left running.

use std::io::{self, Read, Write};

use mcli_protocol::framing::Framing;

use crate::connection::{Connection, Stream};
use crate::error::{ClientError, report};

/// Bridges standard input and output to the connection that `connect` makes in the editor's
/// framing, and returns the exit status.
pub fn run(connect: impl FnOnce(Framing) -> Result<Connection, ClientError>) -> i32 {
    // Over TCP the bridge authenticates first, and that message fixes the connection's framing:
    // read the editor's first bytes to learn which framing it speaks.
    let Some((first, framing)) = first_bytes() else { return 0 };
    let stream = match connect(framing).and_then(|conn| split(conn, first)) {
        Ok(stream) => stream,
        Err(err) => return report(&err),
    };
    let mut downstream = stream;
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match downstream.read(&mut buf) {
            Ok(0) => return 0,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()).is_err() {
                    return 0;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return report(&ClientError::BridgeLost(err)),
        }
    }
}

/// Reads standard input until its first bytes tell the framing; `None` when it ends first.
fn first_bytes() -> Option<(Vec<u8>, Framing)> {
    let mut first = Vec::new();
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                first.extend_from_slice(&buf[..n]);
                match first.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'{' | b'[') => return Some((first, Framing::Lines)),
                    Some(_) => return Some((first, Framing::Headers)),
                    None => {}
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Takes the connection's byte stream, and sends the editor's input (from `first` on) to the
/// server on a thread of its own; returns the stream to read the server's side from.
fn split(conn: Connection, first: Vec<u8>) -> Result<Stream, ClientError> {
    let stream = conn.into_stream()?;
    let mut upstream = stream.try_clone().map_err(ClientError::Bridge)?;
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        if upstream.write_all(&first).is_err() {
            return;
        }
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        // No more requests: say so, and let the replies still due come through.
        let _ = upstream.shutdown_write();
    });
    Ok(stream)
}
