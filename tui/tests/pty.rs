//! The real `molt` binary in a pseudo-terminal, with no flags, against the
//! real `moltd`: navigate Overview → Config → Logs → help → quit. The
//! screen is the pty's output parsed by a terminal emulator; each step
//! waits for the text it expects to be drawn.

mod support;

use support::Daemon;
use support::pty::Console;

#[test]
fn molt_with_no_flags_navigates_screens_and_restores_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);

    // No flags: the state dir is found the way an operator's shell has it.
    let mut screen = Console::start(24, 80, &[("OPENCLAW_STATE_DIR", state.as_os_str())]);
    let press = |screen: &mut Console, key: &str| screen.press(key);

    let pid_row = format!("pid          {},", daemon.pid);
    screen.wait_for("the overview of the running daemon", |s| {
        s.contains("connected") && s.contains(&pid_row)
    });
    assert!(screen.text().contains(&format!("moltd {}", daemon.version)));

    press(&mut screen, "c");
    screen.wait_for("the config screen", |s| {
        s.contains("update.channel") && s.contains("openclaw.json")
    });
    assert!(screen.text().contains("deferral timeout"));

    press(&mut screen, "l");
    screen.wait_for("the logs screen following", |s| {
        s.contains("Logs") && s.contains("following") && s.contains("molt_daemon")
    });

    press(&mut screen, "?");
    screen.wait_for("the help", |s| s.contains("show / hide this help"));

    press(&mut screen, "q");
    let status = screen.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    screen.drain();
    // The alternate screen was left and the cursor shown again, last.
    let raw = String::from_utf8_lossy(&screen.raw);
    let entered = raw
        .rfind("\u{1b}[?1049h")
        .expect("entered the alternate screen");
    let left = raw
        .rfind("\u{1b}[?1049l")
        .expect("left the alternate screen");
    let hidden = raw.rfind("\u{1b}[?25l").expect("hid the cursor");
    let shown = raw.rfind("\u{1b}[?25h").expect("showed the cursor");
    assert!(left > entered && shown > hidden, "{raw:?}");
}
