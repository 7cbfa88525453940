//! How the gateway stops: the token every task watches and the reason the
//! first stop gave, which picks the close code sessions send.

use molt_protocol::status::RestartStrategy;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use molt_protocol::close::ServerClose;

/// Why the gateway stops, announced in the `shutdown` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReason {
    pub reason: String,
    pub restart_expected_ms: Option<u64>,
    /// How sessions close: stopping (1001) or handing off (1012).
    pub close: ServerClose,
    /// Replace the process image once drained (the exec strategy).
    pub exec_after: bool,
    /// A supervisor starts the next process once this one exits (the
    /// supervised strategy): the metrics are handed to that start.
    pub next_start_after: bool,
}

impl StopReason {
    /// An operator or service manager stops the gateway.
    pub fn stop() -> Self {
        Self {
            reason: "stop".to_owned(),
            restart_expected_ms: None,
            close: ServerClose::Stopping,
            exec_after: false,
            next_start_after: false,
        }
    }

    /// A restart: clients reconnect. With respawn the successor already
    /// serves; a supervisor or an exec takes a moment.
    pub fn restart(reason: &str, strategy: RestartStrategy) -> Self {
        Self {
            reason: format!("restart: {reason}"),
            restart_expected_ms: Some(match strategy {
                RestartStrategy::Respawn => 0,
                RestartStrategy::Exec => 250,
                RestartStrategy::Supervised => 1000,
            }),
            close: ServerClose::HandOff,
            exec_after: strategy == RestartStrategy::Exec,
            next_start_after: strategy == RestartStrategy::Supervised,
        }
    }
}

/// The stop signal, shared by the gateway and the engines.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Cancelled when the gateway stops accepting.
    stopping: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl Lifecycle {
    /// Begins an orderly stop; the first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        self.reason.lock().get_or_insert(reason);
        self.stopping.cancel();
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// The first stop's reason; a plain stop if none was given.
    pub fn stop_reason(&self) -> StopReason {
        self.reason.lock().clone().unwrap_or_else(StopReason::stop)
    }
}
