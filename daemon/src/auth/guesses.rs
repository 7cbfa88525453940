//! Failed authentications slow a peer down (`gateway.auth.rateLimit`).
//!
//! Per peer address (an IPv6 peer by its /64, which one host usually
//! owns whole): the first `maxAttempts` failures are free; each failure
//! after them locks the address out for a delay that doubles, from
//! `lockoutMs / 256` up to `lockoutMs`. An attempt during a lockout is
//! refused without looking at its token, so a lockout tells a guesser
//! nothing, and it counts as a failure (the next lockout is longer) but
//! does not move the end of the current one: a client that waits the
//! `retryAfterMs` it was told gets its token checked. A success forgets
//! the address; so does `windowMs` without a failure after a lockout.
//!
//! Sans-IO: the clock comes in with every call. The table is bounded;
//! when full, the address heard from longest ago is forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Addresses tracked at once.
pub const MAX_TRACKED: usize = 4096;
/// The first lockout is `lockoutMs` halved this many times.
const DOUBLINGS: u32 = 8;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

impl Record {
    fn forgotten_at(&self, window: Duration) -> Instant {
        self.locked_until
            .map_or(self.last_failure, |until| until.max(self.last_failure))
            + window
    }
}

/// What a failure or a locked-out attempt costs the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Until the peer's next attempt is checked; zero when it may retry
    /// at once.
    pub retry_after: Duration,
    /// Failures (and locked-out attempts) counted against the peer.
    pub failures: u32,
}

#[derive(Debug)]
pub struct Guesses {
    limit: RateLimit,
    peers: HashMap<IpAddr, Record>,
}

impl Guesses {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            peers: HashMap::new(),
        }
    }

    /// A changed `gateway.auth.rateLimit`; what was counted stays.
    pub fn set_limit(&mut self, limit: RateLimit) {
        self.limit = limit;
    }

    /// The key an address is counted under, `None` when exempt.
    fn key(&self, addr: IpAddr) -> Option<IpAddr> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        if self.limit.exempt_loopback && addr.is_loopback() {
            return None;
        }
        Some(match addr {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
            v4 => v4,
        })
    }

    /// Before a token is checked: `Err` while `addr` is locked out, with
    /// the time left; the attempt is counted.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Result<(), Lockout> {
        let Some(key) = self.key(addr) else {
            return Ok(());
        };
        self.expire(key, now);
        let Some(record) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        match record.locked_until {
            Some(until) if until > now => {
                record.failures = record.failures.saturating_add(1);
                record.last_failure = now;
                Err(Lockout {
                    retry_after: until - now,
                    failures: record.failures,
                })
            }
            _ => Ok(()),
        }
    }

    /// A wrong token from `addr`: how long it is locked out now.
    pub fn failed(&mut self, addr: IpAddr, now: Instant) -> Lockout {
        let Some(key) = self.key(addr) else {
            return Lockout {
                retry_after: Duration::ZERO,
                failures: 0,
            };
        };
        self.expire(key, now);
        if !self.peers.contains_key(&key) {
            self.make_room(now);
        }
        let record = self.peers.entry(key).or_insert(Record {
            failures: 0,
            locked_until: None,
            last_failure: now,
        });
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let retry_after = lockout(&self.limit, record.failures);
        if !retry_after.is_zero() {
            record.locked_until = Some(now + retry_after);
        }
        Lockout {
            retry_after,
            failures: record.failures,
        }
    }

    /// A success from `addr`: its failures are forgiven.
    pub fn succeeded(&mut self, addr: IpAddr) {
        if let Some(key) = self.key(addr) {
            self.peers.remove(&key);
        }
    }

    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    fn expire(&mut self, key: IpAddr, now: Instant) {
        let window = self.limit.window;
        if self
            .peers
            .get(&key)
            .is_some_and(|r| r.forgotten_at(window) <= now)
        {
            self.peers.remove(&key);
        }
    }

    fn make_room(&mut self, now: Instant) {
        if self.peers.len() < MAX_TRACKED {
            return;
        }
        let window = self.limit.window;
        self.peers.retain(|_, r| r.forgotten_at(window) > now);
        if self.peers.len() >= MAX_TRACKED
            && let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, r)| r.last_failure)
                .map(|(k, _)| *k)
        {
            self.peers.remove(&oldest);
        }
    }
}

/// The lockout after `failures` failures: none within `maxAttempts`,
/// then doubling up to `lockoutMs`.
fn lockout(limit: &RateLimit, failures: u32) -> Duration {
    let Some(past) = failures.checked_sub(limit.max_attempts).filter(|n| *n > 0) else {
        return Duration::ZERO;
    };
    let halvings = DOUBLINGS.saturating_sub(past - 1);
    let ms = (limit.lockout.as_millis() as u64 >> halvings).max(1);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_attempts: u32, lockout_ms: u64) -> RateLimit {
        RateLimit {
            max_attempts,
            window: Duration::from_secs(60),
            lockout: Duration::from_millis(lockout_ms),
            exempt_loopback: false,
        }
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn free_attempts_then_lockouts_that_double_up_to_the_cap() {
        let mut guesses = Guesses::new(limit(3, 2560));
        let mut now = Instant::now();
        let mut lockouts = Vec::new();
        for _ in 0..14 {
            assert_eq!(guesses.check(PEER, now), Ok(()));
            let lockout = guesses.failed(PEER, now);
            lockouts.push(lockout.retry_after.as_millis() as u64);
            now += lockout.retry_after;
        }
        assert_eq!(
            lockouts,
            [
                0, 0, 0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 2560, 2560
            ]
        );
    }

    #[test]
    fn a_locked_out_attempt_is_refused_unchecked_counted_and_does_not_extend_the_lockout() {
        let mut guesses = Guesses::new(limit(0, 2560));
        let start = Instant::now();
        let first = guesses.failed(PEER, start);
        assert_eq!(first.retry_after, Duration::from_millis(10));
        let during = guesses
            .check(PEER, start + Duration::from_millis(4))
            .unwrap_err();
        assert_eq!(during.retry_after, Duration::from_millis(6));
        assert_eq!(during.failures, 2);
        // Waiting what it was told is enough, and the next lockout is
        // longer for the attempt made during this one.
        let after = start + Duration::from_millis(10);
        assert_eq!(guesses.check(PEER, after), Ok(()));
        assert_eq!(
            guesses.failed(PEER, after).retry_after,
            Duration::from_millis(40)
        );
    }

    #[test]
    fn a_success_or_a_quiet_window_forgives_and_other_peers_are_untouched() {
        let mut guesses = Guesses::new(limit(0, 2560));
        let now = Instant::now();
        guesses.failed(PEER, now);
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(guesses.check(other, now), Ok(()));
        guesses.succeeded(PEER);
        assert_eq!(guesses.check(PEER, now), Ok(()));
        assert_eq!(guesses.failed(PEER, now).failures, 1);
        let later = now + Duration::from_secs(61);
        assert_eq!(guesses.failed(PEER, later).failures, 1, "forgotten");
    }

    #[test]
    fn an_ipv6_peer_is_counted_by_its_64_and_loopback_may_be_exempt() {
        let mut guesses = Guesses::new(limit(0, 2560));
        let now = Instant::now();
        guesses.failed("2001:db8::1".parse().unwrap(), now);
        assert!(
            guesses
                .check("2001:db8::ffff".parse().unwrap(), now)
                .is_err()
        );
        assert_eq!(
            guesses.check("2001:db8:0:1::1".parse().unwrap(), now),
            Ok(())
        );

        let mut exempt = Guesses::new(RateLimit {
            exempt_loopback: true,
            ..limit(0, 2560)
        });
        exempt.failed("127.0.0.1".parse().unwrap(), now);
        assert_eq!(exempt.check("127.0.0.1".parse().unwrap(), now), Ok(()));
        assert_eq!(exempt.tracked(), 0);
    }

    #[test]
    fn the_table_stays_bounded_under_many_addresses() {
        let mut guesses = Guesses::new(limit(0, 2560));
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 100) {
            guesses.failed(IpAddr::V4(n.into()), now + Duration::from_millis(n.into()));
        }
        assert_eq!(guesses.tracked(), MAX_TRACKED);
    }
}
