//! Reducer and rendering tests of the Fleet screen's rollout: keys in,
//! commands out; rollout events in, the panel out.

use std::path::PathBuf;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use molt_console::fleet::panel::{MAX_TARGET, RolloutEvent};
use molt_console::fleet::record::{Halt, HostEntry, HostOutcome, Rollout, State};
use molt_console::fleet::screen::{FleetCommand, FleetEvent, FleetView};
use molt_console::fleet::start::Request;
use molt_console::fleet::{Fleet, file};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn fleet() -> Fleet {
    let text = "[[gateway]]\nname = \"c1\"\nurl = \"ws://127.0.0.1:1\"\ngroups = [\"canary\"]\n\n\
                [[gateway]]\nname = \"a\"\nurl = \"ws://127.0.0.1:2\"\n\n\
                [[gateway]]\nname = \"b\"\nurl = \"ws://127.0.0.1:3\"\n\n\
                [rollout]\nwave = 1\n";
    file::parse(text, &PathBuf::from("/home/op/.config/molt/fleet.toml")).unwrap()
}

fn view() -> FleetView {
    let mut view = FleetView::new(&fleet(), false, Instant::now());
    view.panel = Default::default();
    view
}

fn key(view: &mut FleetView, code: KeyCode) -> Vec<FleetCommand> {
    view.handle(FleetEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn type_text(view: &mut FleetView, text: &str) {
    for c in text.chars() {
        assert!(key(view, KeyCode::Char(c)).is_empty());
    }
}

fn halted() -> Rollout {
    Rollout {
        fleet: "/home/op/.config/molt/fleet.toml".into(),
        target: Some("2.0.0".into()),
        version: Some("2.0.0".into()),
        group: None,
        waves: vec![vec!["c1".into()], vec!["a".into()], vec!["b".into()]],
        state: State::Halted,
        started_at: 1_700_000_000_000,
        updated_at: 1_700_000_060_000,
        hosts: vec![
            entry("c1", HostOutcome::Verified),
            entry("a", HostOutcome::RolledBack),
        ],
        halt: Some(Halt {
            host: "a".into(),
            outcome: HostOutcome::RolledBack,
            step: Some("restart".into()),
            reason: "update failed: restart-unhealthy: successor exited before it was ready \
                     (exit status: 1); rolled back, pid 4343 v1.0.0 keeps running"
                .into(),
            output_tail: vec![
                "  swap finished (8 ms)".into(),
                "step restart failed: /usr/local/bin/moltd --port 18789".into(),
                "  Error: config key gateway.bind: 10.0.0.300 is not an address".into(),
            ],
            at: 1_700_000_060_000,
        }),
    }
}

fn entry(name: &str, outcome: HostOutcome) -> HostEntry {
    HostEntry {
        name: name.into(),
        from: Some("1.0.0".into()),
        to: Some("2.0.0".into()),
        at: 1_700_000_030_000,
        outcome,
        reason: None,
    }
}

fn draw(view: &FleetView, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| molt_console::ui::fleet::render(view, frame))
        .unwrap();
    terminal.backend().to_string()
}

fn snap(name: &str, view: &FleetView) {
    let mut settings = insta::Settings::clone_current();
    // Gateways that never answer: their retry count is the clock's.
    settings.add_filter(r"(connecting |retry #\d+ )", "[state]    ");
    settings.bind(|| {
        insta::assert_snapshot!(format!("{name}_80x24"), draw(view, 80, 24));
        insta::assert_snapshot!(format!("{name}_120x40"), draw(view, 120, 40));
    });
}

#[test]
fn u_asks_a_target_and_starts_a_rollout_on_the_gateways_shown() {
    let mut view = view();
    assert!(key(&mut view, KeyCode::Char('U')).is_empty());
    assert_eq!(view.panel.prompt.as_deref(), Some(""));
    type_text(&mut view, "2.0.0");
    let commands = key(&mut view, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![FleetCommand::Rollout(Request {
            target: Some("2.0.0".into()),
            group: None,
            wave: file::WaveSize::Count(1),
            canary: "canary".into(),
            resume: false,
            skip: Vec::new(),
            rollback: false,
            new: true,
        })]
    );
    assert!(view.panel.running && view.panel.prompt.is_none());
    // One rollout at a time.
    assert!(key(&mut view, KeyCode::Char('U')).is_empty());
    assert!(view.panel.prompt.is_none());
    assert!(view.panel.error.as_deref().unwrap().contains("running"));
}

#[test]
fn the_prompt_takes_every_key_refuses_a_bad_target_and_esc_cancels() {
    let mut view = view();
    key(&mut view, KeyCode::Char('U'));
    // q and R are text here, not quit and resume.
    type_text(&mut view, "qR");
    assert_eq!(view.panel.prompt.as_deref(), Some("qR"));
    key(&mut view, KeyCode::Backspace);
    key(&mut view, KeyCode::Backspace);
    type_text(&mut view, "1;rm -rf");
    assert!(key(&mut view, KeyCode::Enter).is_empty());
    assert!(view.panel.error.as_deref().unwrap().contains("bad target"));
    assert!(view.panel.prompt.is_some(), "still editing");
    key(&mut view, KeyCode::Esc);
    assert!(view.panel.prompt.is_none());
    // Bounded: a pasted novel stops at the limit.
    key(&mut view, KeyCode::Char('U'));
    type_text(&mut view, &"x".repeat(MAX_TARGET + 10));
    assert_eq!(view.panel.prompt.as_ref().unwrap().len(), MAX_TARGET);
}

#[test]
fn after_a_halt_r_s_and_b_continue_it() {
    for (pressed, want) in [('R', "resume"), ('S', "skip"), ('B', "rollback")] {
        let mut view = view();
        view.panel.record = Some(halted());
        let commands = key(&mut view, KeyCode::Char(pressed));
        let [FleetCommand::Rollout(request)] = commands.as_slice() else {
            panic!("{pressed}: {commands:?}");
        };
        match want {
            "resume" => assert!(request.resume),
            "skip" => assert_eq!(request.skip, ["a"]),
            _ => assert!(request.rollback),
        }
        assert!(!request.new);
    }
    // Nothing halted: nothing to continue.
    let mut view = view();
    for pressed in ['R', 'S', 'B'] {
        assert!(key(&mut view, KeyCode::Char(pressed)).is_empty());
        assert!(
            view.panel
                .error
                .as_deref()
                .unwrap()
                .contains("no halted rollout")
        );
    }
}

#[test]
fn rollout_events_move_the_panel() {
    let mut view = view();
    key(&mut view, KeyCode::Char('U'));
    key(&mut view, KeyCode::Enter);
    let mut started = halted();
    started.state = State::Running;
    started.hosts.clear();
    started.halt = None;
    view.handle(FleetEvent::Rollout(RolloutEvent::Started(started)));
    view.handle(FleetEvent::Rollout(RolloutEvent::Said(
        "wave 1/3: c1 → 2.0.0".into(),
    )));
    view.handle(FleetEvent::Rollout(RolloutEvent::HostDone(entry(
        "c1",
        HostOutcome::Verified,
    ))));
    view.handle(FleetEvent::Rollout(RolloutEvent::Said(
        "wave 2/3: a → 2.0.0".into(),
    )));
    snap("fleet_rollout_running", &view);
    view.handle(FleetEvent::Rollout(RolloutEvent::Finished(Ok(halted()))));
    assert!(!view.panel.running);
    snap("fleet_rollout_halted", &view);
    key(&mut view, KeyCode::Char('U'));
    type_text(&mut view, "2.0.1");
    snap("fleet_rollout_prompt_over_a_halt", &view);
}

#[test]
fn k_and_a_set_a_setting_on_the_gateways_shown_with_a_yes_or_no() {
    use molt_console::fleet::settings::Setting;
    let mut view = view();
    // The group filter decides which gateways: the canary only.
    key(&mut view, KeyCode::Char('g'));
    assert!(key(&mut view, KeyCode::Char('K')).is_empty());
    snap("fleet_kill_switch_choice", &view);
    // Anything but y, n or Esc waits.
    assert!(key(&mut view, KeyCode::Char('q')).is_empty());
    assert_eq!(
        key(&mut view, KeyCode::Char('y')),
        vec![FleetCommand::Apply(
            Setting::KillSwitch(true),
            vec!["c1".into()]
        )]
    );
    key(&mut view, KeyCode::Char('g'));
    key(&mut view, KeyCode::Char('A'));
    assert_eq!(
        key(&mut view, KeyCode::Char('n')),
        vec![FleetCommand::Apply(
            Setting::AutoUpdate(false),
            vec!["c1".into(), "a".into(), "b".into()]
        )]
    );
    key(&mut view, KeyCode::Char('K'));
    assert!(key(&mut view, KeyCode::Esc).is_empty());
    assert!(view.panel.choosing.is_none());
    view.handle(FleetEvent::Rollout(RolloutEvent::Applied(
        Setting::AutoUpdate(false),
        vec![
            ("c1".into(), Ok(())),
            ("a".into(), Ok(())),
            (
                "b".into(),
                Err("could not reach ws://127.0.0.1:3: connection refused".into()),
            ),
        ],
    )));
    snap("fleet_auto_update_applied", &view);
}
