//! `mcli-client --stdio`: joins an editor's standard input and output to the shared server, so
//! every editor talks to one warm server. Bytes pass through untouched (the server detects the
//! framing). When the editor closes its side, the bridge half-closes the connection: replies
//! still on their way come through, then the server closes and the bridge ends. If the bridge
//! itself is killed, the server sees the hang-up and cancels what the editor left running.

use std::io::{self, Read, Write};

use mcli_protocol::framing::Framing;

use crate::cli::{Cli, exit};

pub fn run(cli: &Cli) -> i32 {
    // Over TCP the bridge authenticates first, and that message fixes the connection's framing:
    // read the editor's first bytes to learn which framing it speaks.
    let mut first = Vec::new();
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let framing = loop {
        match stdin.read(&mut buf) {
            Ok(0) => return 0,
            Ok(n) => {
                first.extend_from_slice(&buf[..n]);
                match first.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'{' | b'[') => break Framing::Lines,
                    Some(_) => break Framing::Headers,
                    None => {}
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return 0,
        }
    };
    drop(stdin);
    let target = match crate::cli::target_of(cli, framing) {
        Ok(target) => target,
        Err(err) => {
            eprintln!("mcli-client: {err}");
            return exit::UNAVAILABLE;
        }
    };
    let conn = match target {
        Ok(conn) => conn,
        Err(status) => return status,
    };
    let stream = match conn.into_stream() {
        Ok(stream) => stream,
        Err(err) => {
            eprintln!("mcli-client: {err}");
            return exit::UNAVAILABLE;
        }
    };
    let mut upstream = match stream.try_clone() {
        Ok(upstream) => upstream,
        Err(err) => {
            eprintln!("mcli-client: {err}");
            return exit::UNAVAILABLE;
        }
    };
    // Editor to server on a thread of its own; server to editor here.
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
            Err(err) => {
                eprintln!("mcli-client: the connection to the server failed: {err}");
                return exit::UNAVAILABLE;
            }
        }
    }
}
