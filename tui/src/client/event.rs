use molt_protocol::EventFrame;
use molt_protocol::event::{
    ConfigChanged, EventName, LogsLine, RestartChanged, RestartDeferred, Shutdown, Tick,
    UpdateProgress,
};
use molt_protocol::frame::decode;
use molt_protocol::method::RestartScheduled;
use molt_protocol::update::UpdateAvailable;
use serde_json::Value;

use crate::peer::RunChanged;

/// OpenClaw 2026.9.x: a durable update run moved on.
pub const UPDATE_RUN_CHANGED: &str = "update.run.changed";

/// A server event with its payload decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayEvent {
    Tick(Tick),
    Shutdown(Shutdown),
    RestartScheduled(RestartScheduled),
    RestartDeferred(RestartDeferred),
    RestartChanged(Box<RestartChanged>),
    UpdateProgress(UpdateProgress),
    UpdateAvailable(UpdateAvailable),
    ConfigChanged(ConfigChanged),
    LogsLine(LogsLine),
    /// OpenClaw 2026.9.x `update.run.changed`.
    UpdateRunChanged(RunChanged),
    /// An event this console does not know (a newer gateway), or one whose
    /// payload did not decode; kept rather than dropped so nothing is lost.
    Other {
        name: String,
        payload: Option<Value>,
        problem: Option<String>,
    },
}

impl GatewayEvent {
    pub fn from_frame(frame: EventFrame) -> Self {
        let payload = frame.payload.clone().unwrap_or(Value::Null);
        let typed = match EventName::from_name(&frame.event) {
            Some(EventName::Tick) => decode(payload).map(Self::Tick),
            Some(EventName::Shutdown) => decode(payload).map(Self::Shutdown),
            Some(EventName::RestartScheduled) => decode(payload).map(Self::RestartScheduled),
            Some(EventName::RestartDeferred) => decode(payload).map(Self::RestartDeferred),
            Some(EventName::RestartChanged) => {
                decode(payload).map(|r| Self::RestartChanged(Box::new(r)))
            }
            Some(EventName::UpdateProgress) => decode(payload).map(Self::UpdateProgress),
            Some(EventName::UpdateAvailable) => decode(payload).map(Self::UpdateAvailable),
            Some(EventName::ConfigChanged) => decode(payload).map(Self::ConfigChanged),
            Some(EventName::LogsLine) => decode(payload).map(Self::LogsLine),
            None if frame.event == UPDATE_RUN_CHANGED => RunChanged::from_value(&payload)
                .map(Self::UpdateRunChanged)
                .ok_or_else(|| "runId: missing".to_owned()),
            Some(EventName::ConnectChallenge) | None => {
                return Self::Other {
                    name: frame.event,
                    payload: frame.payload,
                    problem: None,
                };
            }
        };
        typed.unwrap_or_else(|problem| Self::Other {
            name: frame.event,
            payload: frame.payload,
            problem: Some(problem),
        })
    }

    /// The wire name.
    pub fn name(&self) -> &str {
        match self {
            Self::Tick(_) => EventName::Tick.as_str(),
            Self::Shutdown(_) => EventName::Shutdown.as_str(),
            Self::RestartScheduled(_) => EventName::RestartScheduled.as_str(),
            Self::RestartDeferred(_) => EventName::RestartDeferred.as_str(),
            Self::RestartChanged(_) => EventName::RestartChanged.as_str(),
            Self::UpdateProgress(_) => EventName::UpdateProgress.as_str(),
            Self::UpdateAvailable(_) => EventName::UpdateAvailable.as_str(),
            Self::ConfigChanged(_) => EventName::ConfigChanged.as_str(),
            Self::LogsLine(_) => EventName::LogsLine.as_str(),
            Self::UpdateRunChanged(_) => UPDATE_RUN_CHANGED,
            Self::Other { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(event: &str, payload: Value) -> EventFrame {
        EventFrame {
            event: event.into(),
            payload: Some(payload),
            seq: Some(1),
        }
    }

    #[test]
    fn known_events_decode_and_unknown_or_bad_ones_are_kept() {
        let shutdown = GatewayEvent::from_frame(frame(
            "shutdown",
            json!({"reason": "restart", "restartExpectedMs": 500}),
        ));
        assert_eq!(
            shutdown,
            GatewayEvent::Shutdown(Shutdown {
                reason: "restart".into(),
                restart_expected_ms: Some(500)
            })
        );
        let future = GatewayEvent::from_frame(frame("agent.spawned", json!({"x": 1})));
        assert!(matches!(&future, GatewayEvent::Other { problem: None, .. }));
        assert_eq!(future.name(), "agent.spawned");
        let bad = GatewayEvent::from_frame(frame("tick", json!({"ts": "soon"})));
        assert!(matches!(bad, GatewayEvent::Other { problem: Some(p), .. } if p.contains("ts")),);
    }
}
