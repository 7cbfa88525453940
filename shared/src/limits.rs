//! Bounds on what a client may send that moltd keeps or logs: every string
//! a method stores (a hold's reason, a run's note and actor) or repeats
//! (an id it looks up) has a length here, and the number of holds one
//! gateway keeps. Clients check the same numbers before they send; moltd
//! refuses past them with `INVALID_REQUEST` naming the field and the
//! limit ([`TooLong`]). docs/operations.md lists them all.

/// The most characters one client-supplied string field may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextLimit {
    /// The field as the wire names it (`reason`, `sessionKey`, …).
    pub field: &'static str,
    /// In characters (Unicode scalar values), not bytes.
    pub max_chars: usize,
}

/// A string over its [`TextLimit`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be at most {max} characters, got {got}")]
pub struct TooLong {
    pub field: &'static str,
    pub max: usize,
    pub got: usize,
}

impl TextLimit {
    /// `value` within the limit, or the error naming field and limit.
    pub fn check(&self, value: &str) -> Result<(), TooLong> {
        // Bytes bound characters from above: most values never need the count.
        if value.len() <= self.max_chars {
            return Ok(());
        }
        let got = value.chars().count();
        if got <= self.max_chars {
            return Ok(());
        }
        Err(TooLong {
            field: self.field,
            max: self.max_chars,
            got,
        })
    }
}

/// The longest `reason` of `gateway.restart.request`.
pub const MAX_RESTART_REASON: usize = 200;
/// The longest `note` an update run may carry.
pub const MAX_UPDATE_NOTE: usize = 1000;
/// The longest dist-tag `tag` may name.
pub const MAX_DIST_TAG: usize = 64;
/// The longest `tag` of `update.run` (a version or a dist-tag).
pub const MAX_TAG: usize = 256;
/// The longest `sessionKey` of `update.run` (kept as the run's actor).
pub const MAX_SESSION_KEY: usize = 256;
/// The longest `reason` of a hold.
pub const MAX_HOLD_REASON: usize = 200;
/// The longest id (`runId`, `holdId`) a client may ask about.
pub const MAX_ID: usize = 128;
/// Live operator holds one gateway keeps; one more is refused.
pub const MAX_HOLDS: usize = 64;

pub const RESTART_REASON: TextLimit = TextLimit {
    field: "reason",
    max_chars: MAX_RESTART_REASON,
};
pub const UPDATE_NOTE: TextLimit = TextLimit {
    field: "note",
    max_chars: MAX_UPDATE_NOTE,
};
pub const UPDATE_TAG: TextLimit = TextLimit {
    field: "tag",
    max_chars: MAX_TAG,
};
pub const SESSION_KEY: TextLimit = TextLimit {
    field: "sessionKey",
    max_chars: MAX_SESSION_KEY,
};
pub const HOLD_REASON: TextLimit = TextLimit {
    field: "reason",
    max_chars: MAX_HOLD_REASON,
};
pub const HOLD_ID: TextLimit = TextLimit {
    field: "holdId",
    max_chars: MAX_ID,
};
pub const RUN_ID: TextLimit = TextLimit {
    field: "runId",
    max_chars: MAX_ID,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_counts_characters_and_names_field_and_limit() {
        assert_eq!(HOLD_REASON.check(&"x".repeat(MAX_HOLD_REASON)), Ok(()));
        // 200 characters of 3 bytes each: over in bytes, within in characters.
        assert_eq!(HOLD_REASON.check(&"€".repeat(MAX_HOLD_REASON)), Ok(()));
        let err = HOLD_REASON
            .check(&"€".repeat(MAX_HOLD_REASON + 1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "reason must be at most 200 characters, got 201"
        );
        assert_eq!(
            SESSION_KEY
                .check(&"k".repeat(5000))
                .unwrap_err()
                .to_string(),
            "sessionKey must be at most 256 characters, got 5000"
        );
    }
}
