//! Guards that count a request or a piece of work for as long as it lives.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{Gateway, Inner};

/// An in-flight request, counted for its connection.
pub struct RequestGuard {
    pub(super) gateway: Gateway,
    pub(super) conn: u64,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut by_conn = self.gateway.inner.in_flight_by_conn.lock();
        if let Some(count) = by_conn.get_mut(&self.conn) {
            *count -= 1;
            if *count == 0 {
                by_conn.remove(&self.conn);
            }
        }
    }
}

/// Decrements its counter when dropped, so every exit path is counted.
pub struct CountGuard {
    pub(super) gateway: Gateway,
    pub(super) counter: fn(&Inner) -> &AtomicU32,
}

impl CountGuard {
    pub(super) fn new(gateway: Gateway, counter: fn(&Inner) -> &AtomicU32) -> Self {
        counter(&gateway.inner).fetch_add(1, Ordering::Relaxed);
        Self { gateway, counter }
    }
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        (self.counter)(&self.gateway.inner).fetch_sub(1, Ordering::Relaxed);
    }
}
