//! The stdio transport (`mcli-server --stdio`): one session on standard input and output, as an
//! editor spawns it. The end of standard input is the peer hanging up (see `hangup`).

use super::{Peer, Transports};

/// Serves the session until standard input ends or the server closes connections.
pub async fn serve(transports: Transports) {
    let peer = Peer { id: transports.next_id(), transport: "stdio", token: None };
    super::serve(transports, peer, tokio::io::stdin(), tokio::io::stdout()).await;
}
