//! The event bus: what the engines announce, every authenticated session
//! receives. A cheap `Clone` handle; an engine gets one, not the gateway.

use std::sync::Arc;

use molt_protocol::event::EventName;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// Events a slow session may fall behind by before it skips the oldest.
const CAPACITY: usize = 1024;

/// An event for every authenticated session.
#[derive(Debug)]
pub struct Broadcast {
    pub event: EventName,
    pub payload: Value,
}

#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Broadcast>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Broadcast>> {
        self.sender.subscribe()
    }

    pub fn send(&self, event: EventName, payload: impl Serialize) {
        let payload = serde_json::to_value(payload).unwrap_or(Value::Null);
        // No sessions is normal.
        let _ = self.sender.send(Arc::new(Broadcast { event, payload }));
    }
}
