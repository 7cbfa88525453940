use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Error codes shared with OpenClaw's gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    Forbidden,
    Unavailable,
    NotFound,
    Conflict,
    RateLimited,
    Internal,
    /// A code this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code the protocol defines (not [`ErrorCode::Unknown`], which
    /// stands for a code this client does not know).
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Forbidden => "FORBIDDEN",
            Self::Unavailable => "UNAVAILABLE",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::Internal => "INTERNAL",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// Why a method is `UNAVAILABLE` (`details.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnavailableReason {
    GatewayRestarting,
    GatewayStarting,
    UpdateInProgress,
}

/// The error object of a failed response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorShape {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retryable = Some(true);
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn missing_scope(missing: crate::Scope, required: &[crate::Scope]) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("missing scope {}", missing.as_str()),
        )
        .with_details(json!({
            "code": "MISSING_SCOPE",
            "missingScope": missing,
            "requiredScopes": required,
        }))
    }

    pub fn unavailable(reason: UnavailableReason, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message).with_details(json!({ "reason": reason }))
    }

    /// `details.reason` when this is an `UNAVAILABLE` error.
    pub fn unavailable_reason(&self) -> Option<UnavailableReason> {
        let reason = self.details.as_ref()?.get("reason")?;
        serde_json::from_value(reason.clone()).ok()
    }
}

impl std::fmt::Display for ErrorShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = serde_json::to_value(self.code).unwrap_or(Value::Null);
        write!(
            f,
            "{}: {}",
            code.as_str().unwrap_or("UNKNOWN"),
            self.message
        )
    }
}

impl std::error::Error for ErrorShape {}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn all_lists_every_known_code_once_in_order() {
        // A new code breaks this match until it has its place in ALL.
        let place = |code: ErrorCode| match code {
            ErrorCode::InvalidRequest => Some(0),
            ErrorCode::Forbidden => Some(1),
            ErrorCode::Unavailable => Some(2),
            ErrorCode::NotFound => Some(3),
            ErrorCode::Conflict => Some(4),
            ErrorCode::RateLimited => Some(5),
            ErrorCode::Internal => Some(6),
            ErrorCode::Unknown => None,
        };
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(place(*code), Some(i), "{code:?}");
        }
    }
}
