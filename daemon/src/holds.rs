//! Operator maintenance holds: pending work that defers restarts until it
//! is released or its TTL runs out. Bounded: at most [`MAX_HOLDS`] live
//! holds, each reason at most [`HOLD_REASON`] long.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use molt_protocol::ids::HoldId;
use molt_protocol::limits::{HOLD_REASON, MAX_HOLDS, TooLong};

/// The longest hold one request may take.
pub const MAX_HOLD_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Hold {
    pub reason: String,
    pub expires: Instant,
}

#[derive(Debug, Default)]
pub struct Holds {
    next: u64,
    active: HashMap<HoldId, Hold>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    #[error("ttlMs must be between 1 and {} ms", MAX_HOLD_TTL.as_millis())]
    BadTtl,
    #[error("reason must not be empty")]
    EmptyReason,
    #[error(transparent)]
    TooLong(#[from] TooLong),
    #[error("at most {MAX_HOLDS} holds may be live at once; release one first")]
    TooMany,
}

impl Holds {
    pub fn acquire(
        &mut self,
        now: Instant,
        reason: &str,
        ttl: Duration,
    ) -> Result<(HoldId, Instant), HoldError> {
        if ttl.is_zero() || ttl > MAX_HOLD_TTL {
            return Err(HoldError::BadTtl);
        }
        if reason.trim().is_empty() {
            return Err(HoldError::EmptyReason);
        }
        HOLD_REASON.check(reason)?;
        self.expire(now);
        if self.active.len() >= MAX_HOLDS {
            return Err(HoldError::TooMany);
        }
        self.next += 1;
        let id = HoldId(format!("hold-{}", self.next));
        let expires = now + ttl;
        self.active.insert(
            id.clone(),
            Hold {
                reason: reason.to_owned(),
                expires,
            },
        );
        Ok((id, expires))
    }

    /// Whether a live hold with this id was released.
    pub fn release(&mut self, now: Instant, id: &HoldId) -> bool {
        self.expire(now);
        self.active.remove(id).is_some()
    }

    pub fn active(&mut self, now: Instant) -> u32 {
        self.expire(now);
        self.active.len() as u32
    }

    fn expire(&mut self, now: Instant) {
        self.active.retain(|_, hold| hold.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_until_released_or_expired() {
        let t0 = Instant::now();
        let mut holds = Holds::default();
        let (a, _) = holds
            .acquire(t0, "migration", Duration::from_secs(10))
            .unwrap();
        let (b, _) = holds
            .acquire(t0, "backup", Duration::from_secs(60))
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(holds.active(t0), 2);
        assert!(holds.release(t0, &a));
        assert!(!holds.release(t0, &a), "a second release finds nothing");
        assert_eq!(holds.active(t0 + Duration::from_secs(59)), 1);
        assert_eq!(holds.active(t0 + Duration::from_secs(60)), 0);
        assert!(!holds.release(t0 + Duration::from_secs(61), &b));
    }

    #[test]
    fn bad_holds_are_refused() {
        let t0 = Instant::now();
        let mut holds = Holds::default();
        assert_eq!(
            holds.acquire(t0, "x", Duration::ZERO),
            Err(HoldError::BadTtl)
        );
        assert_eq!(
            holds.acquire(t0, "x", MAX_HOLD_TTL + Duration::from_millis(1)),
            Err(HoldError::BadTtl)
        );
        assert_eq!(
            holds.acquire(t0, "  ", Duration::from_secs(1)),
            Err(HoldError::EmptyReason)
        );
        assert_eq!(holds.active(t0), 0);
    }

    #[test]
    fn holds_are_bounded_in_number_and_reason_length() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut holds = Holds::default();
        let long = "r".repeat(HOLD_REASON.max_chars + 1);
        assert_eq!(
            holds.acquire(t0, &long, ttl).unwrap_err().to_string(),
            "reason must be at most 200 characters, got 201"
        );
        for _ in 0..MAX_HOLDS {
            holds.acquire(t0, "x", ttl).unwrap();
        }
        assert_eq!(holds.acquire(t0, "x", ttl), Err(HoldError::TooMany));
        assert_eq!(holds.active(t0), MAX_HOLDS as u32);
        // Expired holds make room again.
        assert!(holds.acquire(t0 + ttl, "x", ttl).is_ok());
    }
}
