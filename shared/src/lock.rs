//! The content of `<state>/gateway.lock`: which process holds the state dir
//! and on which port it serves. `moltd` writes it (and holds the file with
//! flock for its lifetime); `molt` reads it to find a daemon started with
//! `--port 0`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{pid, startedAt, port, version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRecord {
    pub pid: u32,
    /// Milliseconds since the Unix epoch, like the protocol's `ts` fields.
    pub started_at: u64,
    /// 0 until the listener is bound (`--port 0`).
    pub port: u16,
    pub version: String,
}

/// What a lock file says, read by someone who does not hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockContent {
    /// Empty: the holder has not written it yet.
    Empty,
    Record(LockRecord),
}

impl LockRecord {
    /// The port, once the holder has bound one.
    pub fn bound_port(&self) -> Option<u16> {
        (self.port != 0).then_some(self.port)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a lock record always serializes")
    }

    /// Parses the file's bytes. Whitespace only is [`LockContent::Empty`]:
    /// the daemon takes the lock before it writes who it is.
    pub fn parse(bytes: &[u8]) -> Result<LockContent, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(LockContent::Empty);
        }
        serde_json::from_slice(bytes)
            .map(LockContent::Record)
            .map_err(|e| format!("not a valid lock record: {e}"))
    }

    /// Best effort for a message about the holder: pid and bound port from
    /// whatever JSON is there, each `None` when unreadable.
    pub fn holder(bytes: &[u8]) -> (Option<u32>, Option<u16>) {
        let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
            return (None, None);
        };
        let num = |key| value.get(key).and_then(Value::as_u64);
        let pid = num("pid").and_then(|p| u32::try_from(p).ok());
        let port = num("port")
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        (pid, port)
    }
}
