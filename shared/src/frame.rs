use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorShape;
use crate::ids::RequestId;

/// `{type:"req", id, method, params?}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: RequestId,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// `{type:"res", id, ok, payload?|error?}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    pub id: RequestId,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorShape>,
}

impl ResponseFrame {
    pub fn success(id: RequestId, payload: Value) -> Self {
        Self {
            id,
            ok: true,
            payload: Some(payload),
            error: None,
        }
    }

    pub fn failure(id: RequestId, error: ErrorShape) -> Self {
        Self {
            id,
            ok: false,
            payload: None,
            error: Some(error),
        }
    }

    /// The payload decoded as `T`, or the error the server sent.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, ErrorShape> {
        if !self.ok {
            return Err(self
                .error
                .unwrap_or_else(|| ErrorShape::internal("response without error")));
        }
        decode(self.payload.unwrap_or(Value::Null))
            .map_err(|e| ErrorShape::internal(format!("unexpected response payload: {e}")))
    }
}

/// `{type:"event", event, payload?, seq?}`; `seq` is per connection and
/// strictly increasing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    Req(RequestFrame),
}

/// What a server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    Res(ResponseFrame),
    Event(EventFrame),
}

/// Why an incoming text frame was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("invalid frame: {0}")]
    Invalid(String),
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<RequestFrame, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
        match value.get("type").and_then(Value::as_str) {
            Some("req") => {}
            Some(other) => {
                return Err(FrameError::Invalid(format!(
                    "a client sends only \"req\" frames, got \"{other}\""
                )));
            }
            None => return Err(FrameError::Invalid("missing string field `type`".into())),
        }
        let ClientFrame::Req(req) = decode(value).map_err(FrameError::Invalid)?;
        Ok(req)
    }
}

impl ServerFrame {
    pub fn parse(text: &str) -> Result<ServerFrame, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
        decode(value).map_err(FrameError::Invalid)
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

impl ClientFrame {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("client frames always serialize")
    }
}

/// Decodes a JSON value, naming the offending field path on error
/// (`delayMs: invalid type: string "x", expected u64`).
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}
