//! Connections that have not authenticated yet, bounded per peer address
//! and in all. A new connection past a bound evicts the oldest pending
//! one (of that peer first): junk connections that sit out the handshake
//! timeout cannot keep an operator, whose handshake takes milliseconds,
//! from getting in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Connections between accept and `hello-ok`, in all ...
pub const MAX_PENDING: usize = 256;
/// ... and from one peer address.
pub const MAX_PENDING_PER_PEER: usize = 128;

#[derive(Default)]
struct State {
    /// Oldest first.
    pending: VecDeque<Entry>,
    per_peer: HashMap<IpAddr, usize>,
    next_id: u64,
}

struct Entry {
    id: u64,
    peer: IpAddr,
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

    /// Admits a connection from `peer`; returns its place and how many
    /// older pending connections it evicted.
    pub fn admit(&self, peer: IpAddr) -> (Pending, usize) {
        let mut state = self.state.lock();
        let mut evicted = 0;
        while state.per_peer.get(&peer).copied().unwrap_or(0) >= self.max_per_peer {
            let oldest = state.pending.iter().position(|e| e.peer == peer);
            if !oldest.is_some_and(|at| evict(&mut state, at)) {
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

fn forget_peer(state: &mut State, peer: IpAddr) {
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
    fn a_peer_past_its_bound_evicts_its_own_oldest_first() {
        let gate = Admission::new(10, 2);
        let (a1, _) = gate.admit(ip(1));
        let (b1, _) = gate.admit(ip(2));
        let (a2, _) = gate.admit(ip(1));
        let (a3, evicted) = gate.admit(ip(1));
        assert_eq!(evicted, 1);
        assert!(a1.evicted.is_cancelled(), "the peer's oldest goes");
        assert!(!b1.evicted.is_cancelled() && !a2.evicted.is_cancelled());
        assert!(!a3.evicted.is_cancelled());
        assert_eq!(gate.pending(), 3);
    }

    #[test]
    fn past_the_total_bound_the_oldest_of_all_goes() {
        let gate = Admission::new(3, 3);
        let places: Vec<Pending> = (1..=3).map(|i| gate.admit(ip(i)).0).collect();
        let (newest, evicted) = gate.admit(ip(9));
        assert_eq!(evicted, 1);
        assert!(places[0].evicted.is_cancelled());
        assert!(!places[1].evicted.is_cancelled() && !newest.evicted.is_cancelled());
        assert_eq!(gate.pending(), 3);
    }

    #[test]
    fn an_authenticated_connection_leaves_the_gate() {
        let gate = Admission::new(1, 1);
        let (first, _) = gate.admit(ip(1));
        drop(first);
        let (second, evicted) = gate.admit(ip(1));
        assert_eq!((evicted, gate.pending()), (0, 1));
        assert!(!second.evicted.is_cancelled());
    }
}
