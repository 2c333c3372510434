//! Which HTTP connections the bridge serves: at most [`MAX_CONNECTIONS`] in all and
//! [`MAX_PER_ADDRESS`] from one client address. A connection over either bound does not wait:
//! it takes the place of the connection of that address (or of anyone, for the total) that has
//! been idle longest, that is, one that has not sent a complete request since it was accepted
//! or since its last answer; only when every connection in its way is busy with a request is it
//! refused with 503. So a flood of connections that never finish a request cannot keep others
//! out, and a busy client's requests are never cut off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// HTTP connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// HTTP connections served at once from one client address (an IPv6 client: one /64 network,
/// the block a single host is usually given).
pub const MAX_PER_ADDRESS: usize = 256;

/// How long a refused connection may take to receive its 503, and how much of its request is
/// read (and dropped) so that closing does not reset the connection before the answer is read.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
const REFUSAL_DRAIN: u64 = 64 * 1024;

/// A connection's state, as the table and its requests see it.
const IDLE: u8 = 0;
const BUSY: u8 = 1;
const EVICTED: u8 = 2;

/// The table of the connections served. Cheap to share: the accept loop admits into it and
/// each connection's ticket leaves it.
pub struct Admission {
    table: Mutex<Table>,
    /// The epoch of the `idle_since` clocks.
    epoch: Instant,
}

#[derive(Default)]
struct Table {
    /// Every connection admitted and not yet gone or evicted, by id.
    entries: HashMap<usize, (IpAddr, Arc<Tracked>)>,
    /// How many of `entries` each client address has.
    per_address: HashMap<IpAddr, usize>,
}

/// One connection, shared between the table, its task and its requests.
pub struct Tracked {
    state: AtomicU8,
    /// When it last became idle, in milliseconds since the table's epoch: the idlest goes first.
    idle_since: AtomicU64,
    epoch: Instant,
    /// Cancelled when the table evicts the connection: its task closes it at once.
    evicted: CancellationToken,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address has [`MAX_PER_ADDRESS`] connections, all busy.
    Address,
    /// The bridge has [`MAX_CONNECTIONS`], all busy.
    Total,
}

/// A connection's place in the table; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: usize,
    tracked: Arc<Tracked>,
}

/// Marks a connection busy with a request until dropped; then it is idle again.
pub struct Busy(Arc<Tracked>);

impl Admission {
    pub fn new() -> Arc<Self> {
        Arc::new(Admission { table: Mutex::new(Table::default()), epoch: Instant::now() })
    }

    /// Admits connection `id` from `peer`, evicting the idlest connection in its way if it must.
    pub fn admit(self: &Arc<Self>, id: usize, peer: IpAddr) -> Result<Ticket, Refusal> {
        let address = client_address(peer);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.per_address.get(&address).is_some_and(|&n| n >= MAX_PER_ADDRESS) && !table.evict_idlest(Some(address))
        {
            return Err(Refusal::Address);
        }
        if table.entries.len() >= MAX_CONNECTIONS && !table.evict_idlest(None) {
            return Err(Refusal::Total);
        }
        let tracked = Arc::new(Tracked {
            state: AtomicU8::new(IDLE),
            idle_since: AtomicU64::new(0),
            epoch: self.epoch,
            evicted: CancellationToken::new(),
        });
        tracked.mark_idle();
        table.entries.insert(id, (address, Arc::clone(&tracked)));
        *table.per_address.entry(address).or_default() += 1;
        Ok(Ticket { admission: Arc::clone(self), id, tracked })
    }

    fn leave(&self, id: usize) {
        self.table.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

impl Table {
    /// Evicts the connection idle longest (of `address`, when given); false when all are busy.
    fn evict_idlest(&mut self, address: Option<IpAddr>) -> bool {
        loop {
            let idlest = self
                .entries
                .iter()
                .filter(|(_, (a, t))| address.is_none_or(|address| *a == address) && t.state() == IDLE)
                // Of two idle since the same moment, the older connection goes.
                .min_by_key(|(id, (_, t))| (t.idle_since.load(Ordering::Relaxed), **id))
                .map(|(&id, (_, t))| (id, Arc::clone(t)));
            let Some((id, tracked)) = idlest else { return false };
            // It may have turned busy since the look: then look again.
            if tracked.state.compare_exchange(IDLE, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                tracked.evicted.cancel();
                self.remove(id);
                return true;
            }
        }
    }

    fn remove(&mut self, id: usize) {
        let Some((address, _)) = self.entries.remove(&id) else { return };
        if let Some(count) = self.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
    }
}

impl Tracked {
    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn mark_idle(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since.store(now, Ordering::Relaxed);
    }

    /// Marks the connection busy with a complete request, so that it is not evicted; `None`
    /// when it has just been evicted (it is about to close).
    pub fn busy(self: &Arc<Self>) -> Option<Busy> {
        self.state.compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire).ok()?;
        Some(Busy(Arc::clone(self)))
    }

    /// Resolves when the table has evicted the connection.
    pub async fn evicted(&self) {
        self.evicted.cancelled().await;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.mark_idle();
        let _ = self.0.state.compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl Ticket {
    pub fn tracked(&self) -> &Arc<Tracked> {
        &self.tracked
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.leave(self.id);
    }
}

/// The address a bound counts against: an IPv4 client (also as an IPv4-mapped IPv6 address),
/// or the /64 network of an IPv6 client.
fn client_address(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

/// Answers a refused connection with 503 and closes it. Reads (and drops) what the client sent
/// meanwhile, within bounds, so that closing does not reset the connection before the client
/// has read the answer.
pub async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let message = match refusal {
        Refusal::Address => format!(
            "server busy: this address has {MAX_PER_ADDRESS} HTTP connections, all with a request in progress; retry when one has finished"
        ),
        Refusal::Total => format!(
            "server busy: the bridge has {MAX_CONNECTIONS} HTTP connections, all with a request in progress; retry when one has finished"
        ),
    };
    let body = serde_json::json!({ "success": false, "error": message }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let refused = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut (&mut stream).take(REFUSAL_DRAIN), &mut sink).await
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE, refused).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_over_its_bound_evicts_its_idlest_connection() {
        let admission = Admission::new();
        let tickets: Vec<Ticket> =
            (0..MAX_PER_ADDRESS).map(|id| admission.admit(id, ip("127.0.0.1")).unwrap()).collect();
        let busy: Vec<Busy> = tickets[1..].iter().map(|t| t.tracked().busy().unwrap()).collect();
        // Another address is not in the way.
        let other = admission.admit(1000, ip("127.0.0.2")).unwrap();
        let newcomer = admission.admit(1001, ip("127.0.0.1")).unwrap();
        assert!(tickets[0].tracked().evicted.is_cancelled(), "the one idle connection made room");
        assert!(tickets[0].tracked().busy().is_none(), "an evicted connection takes no request");
        // Now every connection of the address is busy but the newcomer, which is idle: it goes.
        let last = admission.admit(1002, ip("127.0.0.1")).unwrap();
        assert!(newcomer.tracked().evicted.is_cancelled());
        assert!(!last.tracked().evicted.is_cancelled());
        drop((busy, other));
    }

    #[test]
    fn all_busy_is_a_refusal() {
        let admission = Admission::new();
        let tickets: Vec<Ticket> =
            (0..MAX_PER_ADDRESS).map(|id| admission.admit(id, ip("10.0.0.1")).unwrap()).collect();
        let busy: Vec<Busy> = tickets.iter().map(|t| t.tracked().busy().unwrap()).collect();
        assert_eq!(admission.admit(9999, ip("10.0.0.1")).err(), Some(Refusal::Address));
        // A busy connection that finishes its request is idle again, and can make room.
        drop(busy);
        assert!(admission.admit(9999, ip("10.0.0.1")).is_ok());
        assert!(tickets[0].tracked().evicted.is_cancelled(), "the idlest went first");
    }

    #[test]
    fn the_total_bound_holds_across_addresses() {
        let admission = Admission::new();
        let mut held = Vec::new();
        for id in 0..MAX_CONNECTIONS {
            let ticket = admission.admit(id, IpAddr::V4((0x0a00_0000 + id as u32).into())).unwrap();
            held.push((ticket.tracked().busy().unwrap(), ticket));
        }
        assert_eq!(admission.admit(5000, ip("192.168.0.1")).err(), Some(Refusal::Total));
        held.pop();
        assert!(admission.admit(5000, ip("192.168.0.1")).is_ok(), "a place came free");
    }

    #[test]
    fn ipv6_counts_per_network_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_address(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_address(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(client_address(ip("127.0.0.1")), ip("127.0.0.1"));
    }
}
