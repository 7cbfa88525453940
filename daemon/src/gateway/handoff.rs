//! What a handoff takes from the gateway: the restart engine's view of
//! it, the held sockets and lock fd, and the metrics passed on.

use std::os::fd::{AsFd, OwnedFd};

use molt_protocol::audit::AuditEntry;
use molt_protocol::status::PendingWork;

use super::Gateway;
use crate::metrics::handoff::Heir;
use crate::restart::engine::Host;
use crate::restart::inherit::HeldFds;
use crate::restart::scheduler::RequesterId;

impl Host for Gateway {
    fn pending_work_excluding(&self, requesters: &[RequesterId]) -> PendingWork {
        let own: u32 = {
            let by_conn = self.inner.in_flight_by_conn.lock();
            requesters.iter().filter_map(|r| by_conn.get(&r.0)).sum()
        };
        self.pending_work(own)
    }

    fn handoff_fds(&self) -> std::io::Result<HeldFds> {
        Gateway::handoff_fds(self)
    }

    fn hand_over(&self, heir: Heir) {
        Gateway::hand_over(self, heir);
    }

    fn audit(&self, entry: AuditEntry) {
        let gw = self.clone();
        self.inner
            .requests
            .spawn(async move { gw.audit(entry).await });
    }
}

impl Gateway {
    /// Hands this process's metrics to `heir` (a respawned process, this
    /// pid after an exec, or the next start under a supervisor); nothing
    /// is counted here after that.
    pub fn hand_over(&self, heir: Heir) {
        crate::metrics::handoff::hand_over(
            crate::metrics::metrics(),
            &self.inner.paths.metrics_handoff_path,
            self.inner.identity.pid,
            heir,
        );
    }

    /// What a predecessor handed to this process: accepted by it, or
    /// started after it exited (see [`crate::metrics::handoff`]).
    pub fn take_over(&self, accepted: bool) {
        crate::metrics::handoff::take_over(
            crate::metrics::metrics(),
            &self.inner.paths.metrics_handoff_path,
            self.inner.identity.pid,
            accepted,
        );
    }

    /// Duplicates of the sockets and the locked lock fd for a successor
    /// (a respawn, or the exec once this process drained).
    pub fn handoff_fds(&self) -> std::io::Result<HeldFds> {
        let listener = self
            .inner
            .listener_fd
            .lock()
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the listener was already released"))?
            .try_clone()?;
        let local = self
            .inner
            .local_fd
            .lock()
            .as_ref()
            .map(OwnedFd::try_clone)
            .transpose()?;
        let lock = self.inner.lock.lock().as_fd().try_clone_to_owned()?;
        Ok(HeldFds {
            listener,
            local,
            lock,
        })
    }
}
