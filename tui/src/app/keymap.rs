//! One table of key bindings: the dispatcher and the help overlay both read
//! it, so help never lies about a key.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::Screen;

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleHelp,
    /// Refresh what the screen shows; when disconnected, reconnect now.
    Refresh,
    /// Close the overlay or dialog, or dismiss the notice.
    Back,
    NextScreen,
    PrevScreen,
    Show(Screen),
    /// The audit trail on the History screen; from there, the update runs.
    ShowAudit,
    /// Go to Update and open the confirm dialog.
    OpenUpdate,
    Up,
    Down,
    PageUp,
    PageDown,
    /// Toggle or edit the selected row; in a dialog, take the choice.
    Activate,
    /// Move between a dialog's buttons.
    SwitchChoice,
    EditNote,
    EditTarget,
    /// Logs: stop or resume following.
    Pause,
    /// Logs: jump to the newest line and follow.
    Follow,
    /// Logs: wrap long lines, or cut them and scroll sideways.
    Wrap,
    /// Logs: move the view sideways (positive: right).
    Side(i8),
    /// Logs: the next minimum level.
    LevelFilter,
    /// Logs: type text to find.
    Search,
    /// Logs: the next match, older or newer.
    FindNext {
        older: bool,
    },
}

/// Which keys apply: a dialog takes different keys than a screen, and a
/// text field takes every printable key (see [`TextKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Screen,
    Dialog,
}

/// A key binding as shown in help.
pub struct Binding {
    pub keys: &'static str,
    pub help: &'static str,
    /// Where the binding applies, for help; empty means everywhere.
    pub scope: &'static str,
}

pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "?",
        help: "show / hide this help",
        scope: "",
    },
    Binding {
        keys: "1-5, o h c l",
        help: "Overview, Update, History, Config, Logs",
        scope: "",
    },
    Binding {
        keys: "a",
        help: "History's audit trail (again: its update runs)",
        scope: "",
    },
    Binding {
        keys: "u",
        help: "open the update dialog (Cancel selected)",
        scope: "",
    },
    Binding {
        keys: "Tab / Shift-Tab",
        help: "next / previous screen",
        scope: "",
    },
    Binding {
        keys: "r",
        help: "refresh; reconnect now when disconnected",
        scope: "",
    },
    Binding {
        keys: "Esc",
        help: "close help or dialog, dismiss the notice",
        scope: "",
    },
    Binding {
        keys: "q / Ctrl-C",
        help: "quit",
        scope: "",
    },
    Binding {
        keys: "Up/Down, k/j",
        help: "select a row; scroll the log and the Overview",
        scope: "lists",
    },
    Binding {
        keys: "PgUp / PgDn",
        help: "move a page",
        scope: "lists",
    },
    Binding {
        keys: "Enter / Space",
        help: "toggle or edit the selected setting",
        scope: "Config",
    },
    Binding {
        keys: "Left/Right, Tab, h/l",
        help: "choose Cancel or Update",
        scope: "dialog",
    },
    Binding {
        keys: "Enter",
        help: "take the selected choice",
        scope: "dialog",
    },
    Binding {
        keys: "n / t",
        help: "edit the note / target version or tag",
        scope: "dialog",
    },
    Binding {
        keys: "p",
        help: "hold OpenClaw's automatic update (update.hold)",
        scope: "Update",
    },
    Binding {
        keys: "p / Space",
        help: "pause / resume following",
        scope: "Logs",
    },
    Binding {
        keys: "End / G",
        help: "jump to the newest line and follow",
        scope: "Logs",
    },
    Binding {
        keys: "w, Left/Right",
        help: "wrap long lines; else scroll sideways",
        scope: "Logs",
    },
    Binding {
        keys: "f, /, n / N",
        help: "minimum level; search, older / newer",
        scope: "Logs",
    },
    Binding {
        keys: "Enter / Esc",
        help: "keep / discard the typed text",
        scope: "text",
    },
    Binding {
        keys: "Backspace",
        help: "delete the last character",
        scope: "text",
    },
];

/// The action bound to a key press in `mode`, if any.
pub fn action_for(key: KeyEvent, mode: Mode) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl {
        return (key.code == KeyCode::Char('c')).then_some(Action::Quit);
    }
    let common = match key.code {
        KeyCode::Char('q') => Some(Action::Quit),
        KeyCode::Char('?') => Some(Action::ToggleHelp),
        KeyCode::Esc => Some(Action::Back),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    match mode {
        Mode::Dialog => match key.code {
            KeyCode::Left
            | KeyCode::Right
            | KeyCode::Tab
            | KeyCode::BackTab
            | KeyCode::Char('h' | 'l') => Some(Action::SwitchChoice),
            KeyCode::Enter => Some(Action::Activate),
            KeyCode::Char('n') => Some(Action::EditNote),
            KeyCode::Char('t') => Some(Action::EditTarget),
            _ => None,
        },
        Mode::Screen => match key.code {
            KeyCode::Char('r') => Some(Action::Refresh),
            KeyCode::Tab => Some(Action::NextScreen),
            KeyCode::BackTab => Some(Action::PrevScreen),
            KeyCode::Char(c) => match c {
                'k' => Some(Action::Up),
                'j' => Some(Action::Down),
                ' ' => Some(Action::Activate),
                'p' => Some(Action::Pause),
                'G' => Some(Action::Follow),
                'w' => Some(Action::Wrap),
                'f' => Some(Action::LevelFilter),
                '/' => Some(Action::Search),
                'n' => Some(Action::FindNext { older: true }),
                'N' => Some(Action::FindNext { older: false }),
                'u' => Some(Action::OpenUpdate),
                'a' => Some(Action::ShowAudit),
                _ => Screen::for_key(c).map(Action::Show),
            },
            KeyCode::Up => Some(Action::Up),
            KeyCode::Down => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown => Some(Action::PageDown),
            KeyCode::Enter => Some(Action::Activate),
            KeyCode::End => Some(Action::Follow),
            KeyCode::Left => Some(Action::Side(-1)),
            KeyCode::Right => Some(Action::Side(1)),
            _ => None,
        },
    }
}

/// A key while a text field has the focus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextKey {
    Insert(char),
    Backspace,
    Accept,
    Discard,
    Quit,
}

pub fn text_key(key: KeyEvent) -> Option<TextKey> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if ctrl => Some(TextKey::Quit),
        _ if ctrl => None,
        KeyCode::Char(c) => Some(TextKey::Insert(c)),
        KeyCode::Backspace => Some(TextKey::Backspace),
        KeyCode::Enter => Some(TextKey::Accept),
        KeyCode::Esc => Some(TextKey::Discard),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::from(code)
    }

    #[test]
    fn every_key_the_dispatcher_knows_is_listed_in_help() {
        let help: String = BINDINGS.iter().map(|b| format!("{} ", b.keys)).collect();
        let screen_keys = [
            ('?', "?"),
            ('r', "r"),
            ('q', "q"),
            ('k', "k/j"),
            ('j', "k/j"),
            ('p', "p"),
            ('G', "G"),
            ('o', "o h c l"),
            ('u', "u"),
            ('a', "a"),
            ('5', "1-5"),
            ('w', "w,"),
            ('f', "f,"),
            ('/', "/,"),
            ('n', "n / N"),
            ('N', "n / N"),
        ];
        for (c, listed) in screen_keys {
            assert!(action_for(press(KeyCode::Char(c)), Mode::Screen).is_some());
            assert!(help.contains(listed), "{listed}");
        }
        for c in ['n', 't', 'h', 'l'] {
            assert!(action_for(press(KeyCode::Char(c)), Mode::Dialog).is_some());
        }
        assert!(help.contains("n / t") && help.contains("Left/Right"));
        for code in [KeyCode::Left, KeyCode::Right] {
            assert!(action_for(press(code), Mode::Screen).is_some());
        }
        assert_eq!(
            action_for(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Mode::Dialog
            ),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(
                KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL),
                Mode::Screen
            ),
            None
        );
        assert_eq!(action_for(press(KeyCode::Char('x')), Mode::Screen), None);
        // Screen keys mean nothing in a dialog: no navigating away by accident.
        assert_eq!(action_for(press(KeyCode::Char('c')), Mode::Dialog), None);
    }

    #[test]
    fn text_fields_take_printable_keys() {
        assert_eq!(
            text_key(press(KeyCode::Char('q'))),
            Some(TextKey::Insert('q'))
        );
        assert_eq!(text_key(press(KeyCode::Enter)), Some(TextKey::Accept));
        assert_eq!(
            text_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(TextKey::Quit)
        );
    }
}
