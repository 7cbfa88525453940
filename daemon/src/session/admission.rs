//! Connections that have not authenticated yet, bounded per peer address
//! and in all. A new connection past a bound evicts the oldest pending
//! one: junk connections that sit out the handshake timeout cannot keep an
//! operator, whose handshake takes milliseconds, from getting in.
//!
//! Past its own bound a peer loses only connections that have been
//! pending for [`STALE_AFTER`]: many clients behind one address that
//! reconnect at once (a handoff, a NAT) finish their handshakes well
//! within it, while junk does not. Past the bound for all, the oldest goes
//! whatever its age.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Connections between accept and `hello-ok`, in all ...
pub const MAX_PENDING: usize = 512;
/// ... and from one peer address, beyond which its stale ones go.
pub const MAX_PENDING_PER_PEER: usize = 128;
/// How long a connection may be pending before a busy peer's new ones
/// evict it.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// Whose connections count together: a TCP peer's address, or a local
/// peer's uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Ip(IpAddr),
    Uid(u32),
}

impl From<IpAddr> for PeerKey {
    fn from(ip: IpAddr) -> Self {
        PeerKey::Ip(ip)
    }
}

#[derive(Default)]
struct State {
    /// Oldest first.
    pending: VecDeque<Entry>,
    per_peer: HashMap<PeerKey, usize>,
    next_id: u64,
}

struct Entry {
    id: u64,
    peer: PeerKey,
    since: Instant,
    evict: CancellationToken,
}

/// The gate between accept and authentication.
#[derive(Clone)]
pub struct Admission {
    state: Arc<Mutex<State>>,
    max_pending: usize,
    max_per_peer: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(MAX_PENDING, MAX_PENDING_PER_PEER)
    }
}

/// A pending connection's place; it ends with the guard (authenticated,
/// or gone). `evicted` fires when a newer connection took the place.
pub struct Pending {
    admission: Admission,
    id: u64,
    pub evicted: CancellationToken,
}

impl Admission {
    pub fn new(max_pending: usize, max_per_peer: usize) -> Self {
        Self {
            state: Arc::default(),
            max_pending,
            max_per_peer,
        }
    }

    /// Admits a connection from `peer` at `now`; returns its place and
    /// how many older pending connections it evicted.
    pub fn admit(&self, peer: impl Into<PeerKey>, now: Instant) -> (Pending, usize) {
        let peer = peer.into();
        let mut state = self.state.lock();
        let mut evicted = 0;
        while state.per_peer.get(&peer).copied().unwrap_or(0) >= self.max_per_peer {
            let stale = state
                .pending
                .iter()
                .position(|e| e.peer == peer && now.duration_since(e.since) >= STALE_AFTER);
            if !stale.is_some_and(|at| evict(&mut state, at)) {
                break;
            }
            evicted += 1;
        }
        while state.pending.len() >= self.max_pending && evict(&mut state, 0) {
            evicted += 1;
        }
        state.next_id += 1;
        let id = state.next_id;
        let token = CancellationToken::new();
        state.pending.push_back(Entry {
            id,
            peer,
            since: now,
            evict: token.clone(),
        });
        *state.per_peer.entry(peer).or_default() += 1;
        drop(state);
        let pending = Pending {
            admission: self.clone(),
            id,
            evicted: token,
        };
        (pending, evicted)
    }

    /// Connections pending now.
    pub fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }
}

/// Removes entry `at` and tells its connection to go.
fn evict(state: &mut State, at: usize) -> bool {
    let Some(entry) = state.pending.remove(at) else {
        return false;
    };
    forget_peer(state, entry.peer);
    entry.evict.cancel();
    true
}

fn forget_peer(state: &mut State, peer: PeerKey) {
    if let Some(count) = state.per_peer.get_mut(&peer) {
        *count -= 1;
        if *count == 0 {
            state.per_peer.remove(&peer);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut state = self.admission.state.lock();
        if let Some(at) = state.pending.iter().position(|e| e.id == self.id) {
            let entry = state.pending.remove(at).expect("found above");
            forget_peer(&mut state, entry.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_peer_past_its_bound_loses_its_own_stale_connections_only() {
        let gate = Admission::new(10, 2);
        let t0 = Instant::now();
        let (a1, _) = gate.admit(ip(1), t0);
        let (b1, _) = gate.admit(ip(2), t0);
        let (a2, _) = gate.admit(ip(1), t0 + STALE_AFTER / 2);
        // Nothing of the peer is stale yet: a reconnecting crowd is let in.
        let (a3, evicted) = gate.admit(ip(1), t0 + STALE_AFTER / 2);
        assert_eq!(evicted, 0);
        // Later its stale ones go, oldest first, to make room.
        let (a4, evicted) = gate.admit(ip(1), t0 + STALE_AFTER);
        assert_eq!(evicted, 1);
        assert!(a1.evicted.is_cancelled(), "the peer's oldest goes");
        assert!(!b1.evicted.is_cancelled(), "another peer's stays");
        assert!(!a2.evicted.is_cancelled() && !a3.evicted.is_cancelled());
        assert!(!a4.evicted.is_cancelled());
        assert_eq!(gate.pending(), 4);
    }

    #[test]
    fn past_the_total_bound_the_oldest_of_all_goes() {
        let gate = Admission::new(3, 3);
        let now = Instant::now();
        let places: Vec<Pending> = (1..=3).map(|i| gate.admit(ip(i), now).0).collect();
        let (newest, evicted) = gate.admit(ip(9), now);
        assert_eq!(evicted, 1);
        assert!(places[0].evicted.is_cancelled());
        assert!(!places[1].evicted.is_cancelled() && !newest.evicted.is_cancelled());
        assert_eq!(gate.pending(), 3);
    }

    #[test]
    fn an_authenticated_connection_leaves_the_gate() {
        let gate = Admission::new(1, 1);
        let (first, _) = gate.admit(ip(1), Instant::now());
        drop(first);
        let (second, evicted) = gate.admit(ip(1), Instant::now());
        assert_eq!((evicted, gate.pending()), (0, 1));
        assert!(!second.evicted.is_cancelled());
    }
}
