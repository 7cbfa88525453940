//! The confirm dialog and its text fields.

use crate::app::keymap::TextKey;
use crate::peer::{Outcome, RunAnswer};

/// Longest note or target the console sends.
pub(super) use molt_protocol::method::{MAX_DIST_TAG as MAX_TAG, MAX_UPDATE_NOTE as MAX_NOTE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Cancel,
    Update,
}

/// Which text a [`TextInput`] edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Note,
    Target,
    DeferralTimeout,
    /// Text to find on the Logs screen.
    LogSearch,
}

/// A one-line text field with the focus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextInput {
    pub field: Field,
    pub text: String,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

impl TextInput {
    pub fn new(field: Field, text: impl Into<String>) -> Self {
        Self {
            field,
            text: text.into(),
            error: None,
        }
    }

    /// Applies an editing key; true when the key was Enter.
    pub fn edit(&mut self, key: &TextKey, max: usize) -> bool {
        if matches!(key, TextKey::Insert(_) | TextKey::Backspace) {
            self.error = None;
        }
        edit_text(&mut self.text, key, max)
    }
}

/// Applies an editing key to `text`, at most `max` characters of it; true
/// when the key was Enter.
pub fn edit_text(text: &mut String, key: &TextKey, max: usize) -> bool {
    match key {
        TextKey::Insert(c) if !c.is_control() && text.chars().count() < max => text.push(*c),
        TextKey::Backspace => {
            text.pop();
        }
        TextKey::Accept => return true,
        _ => {}
    }
    false
}

/// What the update would do, as far as the gateway tells before it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Preview {
    Resolving,
    /// moltd's dry run: the exact target.
    Ready(Box<RunAnswer>),
    /// OpenClaw takes no dry run and resolves the target from its channel
    /// when it runs; `latest` is what it last reported available.
    Unplanned {
        latest: Option<String>,
    },
    Failed(String),
}

/// The confirm dialog. Cancel is selected when it opens.
#[derive(Clone, Debug, PartialEq)]
pub struct Dialog {
    pub current: Option<String>,
    pub preview: Preview,
    pub note: String,
    /// Target version or dist-tag; empty means the configured channel.
    pub tag: String,
    pub editing: Option<TextInput>,
    pub choice: Choice,
    /// Why the last Update press did nothing.
    pub refusal: Option<String>,
}

impl Dialog {
    pub(super) fn new(current: Option<String>) -> Self {
        Self {
            current,
            preview: Preview::Resolving,
            note: String::new(),
            tag: String::new(),
            editing: None,
            choice: Choice::Cancel,
            refusal: None,
        }
    }

    pub fn switch_choice(&mut self) {
        self.choice = match self.choice {
            Choice::Cancel => Choice::Update,
            Choice::Update => Choice::Cancel,
        };
    }

    /// The version the run would install, once resolved.
    pub fn target(&self) -> Option<&str> {
        match &self.preview {
            Preview::Ready(result) => result.after.as_deref(),
            _ => None,
        }
    }

    /// Why Update cannot be taken now, if it cannot.
    pub fn blocker(&self) -> Option<String> {
        match &self.preview {
            Preview::Resolving => Some("still resolving the target".to_owned()),
            Preview::Failed(problem) => Some(problem.clone()),
            Preview::Unplanned { .. } => None,
            Preview::Ready(result) => match result.outcome {
                Outcome::Succeeded => None,
                Outcome::Skipped if result.planned => None,
                Outcome::Skipped | Outcome::Running => Some(format!(
                    "nothing to do: {}",
                    result.reason.as_deref().unwrap_or("skipped")
                )),
                Outcome::Failed { .. } => Some(format!(
                    "the dry run failed: {}",
                    crate::peer::explain_failure(
                        result.reason.as_deref().unwrap_or("error"),
                        &result.steps
                    )
                )),
            },
        }
    }
}

/// A version (`1.2.3`, `v1.2.3-beta.1`) or a dist-tag (`latest`, `beta`),
/// by the rule moltd applies ([`molt_protocol::tag::parse_tag`]); empty
/// means the channel's default.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Ok(());
    }
    molt_protocol::tag::parse_tag(tag)
        .map(|_| ())
        .map_err(|e| e.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_versions_or_dist_tags() {
        for ok in [
            "",
            "1.2.3",
            "v1.2.3-beta.1",
            "latest",
            "next_2",
            "1.0.0+build.5",
        ] {
            assert_eq!(validate_tag(ok), Ok(()), "{ok}");
        }
        for bad in ["-rf", "1.2 3", "a;b", "$(x)", &"9".repeat(65)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
