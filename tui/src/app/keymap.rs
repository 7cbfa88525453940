//! One table of key bindings: the dispatcher and the help overlay both read
//! it, so help never lies about a key.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleHelp,
    /// Refresh now; when disconnected, reconnect now.
    Refresh,
    /// Close the overlay, or dismiss the notice.
    Back,
    NextScreen,
    PrevScreen,
}

/// A key binding as shown in help.
pub struct Binding {
    pub keys: &'static str,
    pub action: Action,
    pub help: &'static str,
}

pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "?",
        action: Action::ToggleHelp,
        help: "show / hide this help",
    },
    Binding {
        keys: "r",
        action: Action::Refresh,
        help: "refresh now; reconnect now when disconnected",
    },
    Binding {
        keys: "Tab / Shift-Tab",
        action: Action::NextScreen,
        help: "next / previous screen",
    },
    Binding {
        keys: "Esc",
        action: Action::Back,
        help: "close help, dismiss the notice",
    },
    Binding {
        keys: "q / Ctrl-C",
        action: Action::Quit,
        help: "quit",
    },
];

/// The action bound to a key press, if any.
pub fn action_for(key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if ctrl => Some(Action::Quit),
        _ if ctrl => None,
        KeyCode::Char('q') => Some(Action::Quit),
        KeyCode::Char('?') => Some(Action::ToggleHelp),
        KeyCode::Char('r') => Some(Action::Refresh),
        KeyCode::Esc => Some(Action::Back),
        KeyCode::Tab => Some(Action::NextScreen),
        KeyCode::BackTab => Some(Action::PrevScreen),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_action_is_listed_in_help() {
        let keys = [
            KeyEvent::from(KeyCode::Char('q')),
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            KeyEvent::from(KeyCode::Char('?')),
            KeyEvent::from(KeyCode::Char('r')),
            KeyEvent::from(KeyCode::Esc),
            KeyEvent::from(KeyCode::Tab),
        ];
        for key in keys {
            let action = action_for(key).expect("bound");
            assert!(BINDINGS.iter().any(|b| b.action == action), "{action:?}");
        }
        assert_eq!(
            action_for(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            None
        );
        assert_eq!(action_for(KeyEvent::from(KeyCode::Char('x'))), None);
    }
}
