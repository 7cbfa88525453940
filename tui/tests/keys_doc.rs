//! docs/console.md's key table against the dispatcher
//! (`molt_console::app::keymap`): in each mode (a screen, the update
//! dialog, a text field) the keys the table lists are exactly the keys
//! that do something. A binding added, dropped or moved without the doc
//! fails here. The help overlay (`BINDINGS`) names the same keys.

use std::collections::BTreeSet;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use molt_console::app::keymap::{BINDINGS, Mode, TextKey, action_for, text_key};
use molt_e2e::doc;

const DOC: &str = include_str!("../../docs/console.md");

/// Every key a terminal can send that a binding could use, by the name
/// the doc gives it.
fn keys() -> Vec<(String, KeyEvent)> {
    let mut keys: Vec<(String, KeyEvent)> = (' '..='~')
        .map(|c| {
            let name = if c == ' ' {
                "Space".to_owned()
            } else {
                c.to_string()
            };
            (name, KeyEvent::from(KeyCode::Char(c)))
        })
        .collect();
    for c in 'a'..='z' {
        keys.push((
            format!("Ctrl-{}", c.to_ascii_uppercase()),
            KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL),
        ));
    }
    let special = [
        ("Up", KeyCode::Up),
        ("Down", KeyCode::Down),
        ("Left", KeyCode::Left),
        ("Right", KeyCode::Right),
        ("PgUp", KeyCode::PageUp),
        ("PgDn", KeyCode::PageDown),
        ("Home", KeyCode::Home),
        ("End", KeyCode::End),
        ("Tab", KeyCode::Tab),
        ("Shift-Tab", KeyCode::BackTab),
        ("Enter", KeyCode::Enter),
        ("Esc", KeyCode::Esc),
        ("Backspace", KeyCode::Backspace),
        ("Delete", KeyCode::Delete),
        ("Insert", KeyCode::Insert),
    ];
    keys.extend(special.map(|(name, code)| (name.to_owned(), KeyEvent::from(code))));
    keys.extend((1..=12).map(|n| (format!("F{n}"), KeyEvent::from(KeyCode::F(n)))));
    keys
}

/// The key names of a cell, with a range `` `1`-`5` `` spelled out.
fn key_names(cell: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = cell;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        let end = after.find('`').expect("closed backtick");
        let name = &after[..end];
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix("-`") {
            let close = next.find('`').unwrap();
            let (from, to) = (
                name.chars().next().unwrap(),
                next[..close].chars().next().unwrap(),
            );
            names.extend((from..=to).map(String::from));
            rest = &next[close + 1..];
        } else {
            names.push(name.to_owned());
        }
    }
    names
}

/// The keys the table lists where `applies` accepts the "where" cell.
fn documented(applies: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let table = doc::table_with(DOC, "Keys", &["keys", "where", "what"]);
    table
        .rows
        .iter()
        .filter(|row| applies(&row[1]))
        .flat_map(|row| key_names(&row[0]))
        .collect()
}

fn bound(does_something: impl Fn(KeyEvent) -> bool) -> BTreeSet<String> {
    keys()
        .into_iter()
        .filter(|(_, key)| does_something(*key))
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn the_screen_keys_are_the_documented_ones() {
    let on_screens = documented(|at| !matches!(at, "update dialog" | "a text field"));
    assert_eq!(
        on_screens,
        bound(|key| action_for(key, Mode::Screen).is_some()),
        "docs/console.md, \"Keys\": rows for everywhere, every screen and named screens"
    );
}

#[test]
fn the_dialog_keys_are_the_documented_ones() {
    let in_dialog = documented(|at| matches!(at, "everywhere" | "update dialog"));
    assert_eq!(
        in_dialog,
        bound(|key| action_for(key, Mode::Dialog).is_some()),
        "docs/console.md, \"Keys\": rows for everywhere and the update dialog"
    );
}

#[test]
fn a_text_field_takes_every_printable_key_and_the_documented_others() {
    for c in ' '..='~' {
        assert_eq!(
            text_key(KeyEvent::from(KeyCode::Char(c))),
            Some(TextKey::Insert(c))
        );
    }
    let in_text = documented(|at| at == "a text field");
    let others = bound(|key| text_key(key).is_some_and(|k| !matches!(k, TextKey::Insert(_))));
    assert_eq!(in_text, others, "docs/console.md, \"Keys\": a text field");
}

/// The key names of a help line such as `Up/Down, k/j` or `f, /, n / N`.
fn help_key_names(keys: &str) -> Vec<String> {
    let mut names = Vec::new();
    for word in keys.split(", ").flat_map(|part| part.split(' ')) {
        match word {
            "/" | "" => {}
            _ if word.len() == 3 && word.as_bytes()[1] == b'-' => {
                let (from, to) = (word.as_bytes()[0] as char, word.as_bytes()[2] as char);
                names.extend((from..=to).map(String::from));
            }
            _ => names.extend(word.split('/').map(str::to_owned)),
        }
    }
    // `f, /, n / N`: a part that is only a slash is the key itself.
    if keys.split(", ").any(|part| part == "/") {
        names.push("/".to_owned());
    }
    names.retain(|n| !n.is_empty());
    names
}

#[test]
fn the_help_overlay_names_the_keys_the_doc_names() {
    let help: BTreeSet<String> = BINDINGS
        .iter()
        .flat_map(|b| help_key_names(b.keys))
        .collect();
    let documented = documented(|_| true);
    assert_eq!(
        help, documented,
        "the help overlay (keymap::BINDINGS) and docs/console.md"
    );
}

/// What a key can change on the Fleet screen.
fn fleet_state(view: &molt_console::fleet::screen::FleetView) -> String {
    format!(
        "{} {:?} {:?} {:?} {:?} {:?} {} {:?}",
        view.selected,
        view.group,
        view.sort,
        view.open,
        view.panel.prompt,
        view.panel.error,
        view.panel.running,
        view.panel.choosing,
    )
}

/// A Fleet screen on three gateways (one in a group), the second row
/// selected, after a halted rollout: every documented key has something
/// to act on.
fn fleet_view() -> molt_console::fleet::screen::FleetView {
    use molt_console::fleet::record::{Halt, HostOutcome, Rollout, State};
    let text = "[[gateway]]\nname = \"c1\"\nurl = \"ws://127.0.0.1:1\"\ngroups = [\"canary\"]\n\n\
                [[gateway]]\nname = \"a\"\nurl = \"ws://127.0.0.1:2\"\n\n\
                [[gateway]]\nname = \"b\"\nurl = \"ws://127.0.0.1:3\"\n";
    let fleet = molt_console::fleet::file::parse(text, std::path::Path::new("/f/fleet.toml"))
        .expect("a fleet file");
    let mut view =
        molt_console::fleet::screen::FleetView::new(&fleet, false, std::time::Instant::now());
    view.selected = 1;
    view.panel = Default::default();
    view.panel.record = Some(Rollout {
        fleet: "/f/fleet.toml".into(),
        target: None,
        version: Some("2.0.0".into()),
        group: None,
        waves: vec![vec!["c1".into()], vec!["a".into(), "b".into()]],
        state: State::Halted,
        started_at: 0,
        updated_at: 0,
        hosts: Vec::new(),
        halt: Some(Halt {
            host: "c1".into(),
            outcome: HostOutcome::Failed,
            step: None,
            reason: "x".into(),
            output_tail: Vec::new(),
            at: 0,
        }),
    });
    view
}

#[test]
fn the_fleet_screen_keys_are_the_documented_ones() {
    use molt_console::fleet::screen::FleetEvent;
    let table = doc::table_with(DOC, "The Fleet screen", &["keys", "what"]);
    let documented: BTreeSet<String> = table.rows.iter().flat_map(|r| key_names(&r[0])).collect();
    // In the list, a key acts when it asks something or changes the view;
    // with a gateway's console open, Esc is the one key of the fleet's.
    let acts = |key: KeyEvent| {
        let mut view = fleet_view();
        let before = fleet_state(&view);
        let commands = view.handle(FleetEvent::Key(key));
        !commands.is_empty() || fleet_state(&view) != before
    };
    let mut bound = bound(acts);
    let mut opened = fleet_view();
    opened.open = Some(0);
    opened.handle(FleetEvent::Key(KeyEvent::from(KeyCode::Esc)));
    if opened.open.is_none() {
        bound.insert("Esc".to_owned());
    }
    assert_eq!(
        documented, bound,
        "docs/console.md, \"The Fleet screen\": its key table"
    );
}
