//! Defects found driving the Update screen against moltd, each asserted on
//! the whole screen: steps listed again on every reload, a failing git
//! fetch named by its last line of advice, and a restart line that ran
//! past its column at 100 columns.

mod common;

use std::time::Instant;

use common::*;
use crossterm::event::KeyCode;
use molt_console::app::{App, RunStage};
use molt_console::net::Purpose;
use molt_console::ui;
use molt_protocol::update::{RunPhase, StepRecord, Termination, UpdateStatus};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// The screen as lines, trailing blanks and borders' padding kept.
fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(app, frame)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

fn assert_screen(app: &App, width: u16, height: u16, want: &[&str]) {
    let got = screen(app, width, height);
    let shown = got.join("\n");
    // The header's right side carries the build's own version.
    assert_eq!(got.len(), want.len(), "\n{shown}");
    for (i, (got, want)) in got.iter().zip(want).enumerate().skip(1) {
        assert_eq!(got, want, "line {i} differs:\n{shown}");
    }
}

/// Started from the dialog: `update.run` sent for 0.2.0.
fn started(base: Instant) -> App {
    let mut app = connected_app(idle_status(), base);
    app.handle(key('u'));
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, None),
    ));
    app.handle(response(Purpose::UpdatePreview, dry_run("0.2.0")));
    app.handle(press(KeyCode::Right));
    app.handle(press(KeyCode::Enter));
    app
}

/// After a verified update the steps come from the events, the run's
/// answer, and the run record in every `update.status` after the
/// reconnect. Each step shows once.
#[test]
fn steps_read_again_are_merged_not_listed_again() {
    let base = Instant::now();
    let mut app = started(base);
    let names = ["resolve", "stage", "install", "verify", "swap"];
    for name in names {
        app.handle(progress(RunPhase::Running, Some((name, "started", None))));
        app.handle(progress(
            RunPhase::Running,
            Some((name, "finished", Some(0))),
        ));
    }
    let records: Vec<StepRecord> = names.iter().map(|n| step_record(n, 0, "")).collect();
    app.handle(response(
        Purpose::UpdateRun,
        run_result(UpdateStatus::Ok, "0.2.0", records.clone()),
    ));
    app.handle(closed(1012, "update.run"));
    app.handle(successor_connected("0.2.0", 37));
    // The successor's update.status carries the verified run's record,
    // and is asked again (a tick, the screen's refresh).
    let mut record = run_record("run-8", RunPhase::Verified, "0.1.0", "0.2.0");
    record.steps = records;
    for _ in 0..3 {
        app.handle(response(
            Purpose::UpdateStatus,
            update_status(
                "0.2.0",
                Some(sentinel(
                    UpdateStatus::Ok,
                    Some(("0.2.0", SUCCESSOR_PID, None)),
                    false,
                )),
                Some(record.clone()),
            ),
        ));
    }
    assert_eq!(
        app.update.run.as_ref().unwrap().stage,
        RunStage::Verified {
            version: "0.2.0".into(),
            pid: Some(SUCCESSOR_PID)
        }
    );
    app.notice = None;
    assert_screen(
        &app,
        80,
        24,
        &[
            "",
            "┌ Update ──────────────────────────────────────────────────────────────────────┐",
            "│  run         run-8: 0.1.0 → 0.2.0                                            │",
            "│  state       ✓ verified: v0.2.0 runs as pid 5151                             │",
            "│  restart     handed off: pid 4343 v0.1.0 → pid 5151 v0.2.0, gap 37 ms        │",
            "│                                                                              │",
            "│  Truth                                                                       │",
            "│  claims      sentinel ok: 0.1.0 → 0.2.0; saw 0.2.0 running as pid 5151       │",
            "│  live        0.2.0 (hello-ok), 0.2.0 (status), pid 5151                      │",
            "│  verdict     the process runs 0.2.0, as the install says                     │",
            "│  process     new pid 5151 (was 4343)                                         │",
            "│                                                                              │",
            "│  Steps                                                                       │",
            "│    ✓ resolve           1.5 s                                                 │",
            "│    ✓ stage             1.5 s                                                 │",
            "│    ✓ install           1.5 s                                                 │",
            "│    ✓ verify            1.5 s                                                 │",
            "│    ✓ swap              1.5 s                                                 │",
            "│                                                                              │",
            "│                                                                              │",
            "│                                                                              │",
            "│                                                                              │",
            "└──────────────────────────────────────────────────────────────────────────────┘",
            " q quit  ? help  r refresh  Tab screens  u update…                              ",
        ],
    );
}

/// What `git fetch` prints when its remote is gone: the first line names
/// the problem, the last ones are advice.
const GIT_FETCH_STDERR: &str = "fatal: '/srv/molt/upstream.git' does not appear to be a git repository\n\
fatal: Could not read from remote repository.\n\
\n\
Please make sure you have the correct access rights\n\
and the repository exists.\n";

#[test]
fn a_failed_git_fetch_is_named_by_the_line_that_names_the_problem() {
    let base = Instant::now();
    let mut app = started(base);
    let fetch = StepRecord {
        name: "fetch".into(),
        command: "git fetch --tags origin".into(),
        argv: Vec::new(),
        cwd: Some("/srv/molt".into()),
        duration_ms: 40,
        exit_code: Some(128),
        termination: Termination::Exited,
        stdout_head: String::new(),
        stdout_tail: String::new(),
        stderr_head: GIT_FETCH_STDERR.into(),
        stderr_tail: GIT_FETCH_STDERR.into(),
    };
    let mut answer = run_result(UpdateStatus::Error, "0.2.0", vec![fetch]);
    // moltd's reason quotes the step's last stderr line.
    answer["result"]["reason"] =
        serde_json::json!("fetch failed (exit 128): and the repository exists.");
    answer["result"]["mode"] = serde_json::json!("git");
    app.handle(response(Purpose::UpdateRun, answer));
    assert_screen(
        &app,
        80,
        24,
        &[
            "",
            "┌ Update ──────────────────────────────────────────────────────────────────────┐",
            "│  run         run-8: 0.1.0 → 0.2.0                                            │",
            "│  state       ✗ failed: fetch failed (exit 128): fatal:                       │",
            "│              '/srv/molt/upstream.git' does not appear to be a git repository │",
            "│                                                                              │",
            "│  Steps                                                                       │",
            "│    ✗ fetch             40 ms  exit 128                                       │",
            "│                                                                              │",
            "│  fetch failed: git fetch --tags origin                                       │",
            "│  stderr head:                                                                │",
            "│    fatal: '/srv/molt/upstream.git' does not appear to be a git repository    │",
            "│    fatal: Could not read from remote repository.                             │",
            "│    Please make sure you have the correct access rights                       │",
            "│    and the repository exists.                                                │",
            "│                                                                              │",
            "│                                                                              │",
            "│                                                                              │",
            "│                                                                              │",
            "│                                                                              │",
            "│                                                                              │",
            "│                                                                              │",
            "└──────────────────────────────────────────────────────────────────────────────┘",
            " q quit  ? help  r refresh  Tab screens  u update…                              ",
        ],
    );
}

/// At 100 columns the restart row's text reaches the box edge; what does
/// not fit must wrap under the value, not run out of its column.
#[test]
fn the_restart_row_stays_in_its_column_at_100_columns() {
    let mut app = connected_app(status(), Instant::now());
    app.handle(key('2'));
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, None),
    ));
    assert_screen(
        &app,
        100,
        16,
        &[
            "",
            "┌ Update ──────────────────────────────────────────────────────────────────────────────────────────┐",
            "│  running     0.1.0 (pid 4343)                                                                    │",
            "│  available   0.1.0 -> 0.2.0 on stable                                                            │",
            "│  latest run  run-7 verified 0.0.9 -> 0.1.0, manual, 1h 02m 08s ago                               │",
            "│                                                                                                  │",
            "│  restart     moltd starts the new version beside this one and hands it the port; it never        │",
            "│              closes; restarts at once after the swap (no deferral); connected clients reconnect  │",
            "│                                                                                                  │",
            "│  Press u to update; a dialog shows the target and asks first. r checks the registry now.         │",
            "│                                                                                                  │",
            "│                                                                                                  │",
            "│                                                                                                  │",
            "│                                                                                                  │",
            "└──────────────────────────────────────────────────────────────────────────────────────────────────┘",
            " q quit  ? help  r refresh  Tab screens  u update…                                                  ",
        ],
    );
}
