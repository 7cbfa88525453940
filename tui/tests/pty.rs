//! The real `molt` binary in a pseudo-terminal, with no flags, against the
//! real `moltd`: navigate Overview → Config → Logs → help → quit; the
//! Logs screen and the audit trail at 80x24. The
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
        s.contains("Logs") && s.contains("following") && s.contains("moltd: READY")
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

/// The rows inside the Logs box (between its top and bottom borders),
/// without the side borders, trailing blanks trimmed.
fn box_rows(screen: &str) -> Vec<String> {
    let rows: Vec<&str> = screen.lines().collect();
    rows.iter()
        .skip(2)
        .take_while(|r| !r.starts_with('└'))
        .map(|r| {
            r.trim_start_matches('│')
                .trim_end()
                .trim_end_matches('│')
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn is_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}

#[test]
fn logs_read_at_80x24_wrapped_or_cut_filtered_and_searched() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // moltd warns at start about a line it cannot read, naming the file:
    // a line longer than 80 columns.
    std::fs::write(state.join(".env"), "not an assignment\n").unwrap();
    let _daemon = Daemon::start(&state);
    let mut screen = Console::start(24, 80, &[("OPENCLAW_STATE_DIR", state.as_os_str())]);
    screen.wait_for("connected", |s| s.contains("connected"));
    screen.press("l");
    screen.wait_for("the log with READY", |s| s.contains("moltd: READY"));

    // Every line: time, level letter, module without moltd's crate name.
    let rows = box_rows(&screen.text());
    assert!(
        rows[0].starts_with("── 20") && rows[0].ends_with(" UTC ──"),
        "{rows:?}"
    );
    for row in rows.iter().skip(1).filter(|r| !r.is_empty()) {
        let letter = row.chars().nth(9);
        assert!(
            is_time(row) && matches!(letter, Some('T' | 'D' | 'I' | 'W' | 'E')),
            "{row:?} in\n{}",
            screen.text()
        );
        assert!(!row.contains("molt_daemon::"), "{row:?}");
    }

    // Warnings and worse: the one line, cut at the box's edge.
    for _ in 0..3 {
        screen.press("f");
    }
    screen.wait_for("warn and above", |s| s.contains("warn+"));
    let text = screen.text();
    let rows = box_rows(&text);
    let time = &rows[1][..8];
    assert!(is_time(time), "{text}");
    let full = format!(
        "{time} W env_file: {}/.env: line 1: expected KEY=VALUE; line ignored",
        state.display()
    );
    assert!(full.chars().count() > 78, "the line must not fit: {full}");
    let cut: String = full.chars().take(78).collect();
    let mut want = vec![rows[0].clone(), cut];
    want.resize(20, String::new());
    assert_eq!(rows, want, "\n{text}");
    assert!(
        text.lines().nth(1).unwrap().contains("following · warn+"),
        "{text}"
    );

    // Wrapped: the rest on the next row, under the message.
    screen.press("w");
    screen.wait_for("wrapped", |s| s.contains("warn+ · wrap"));
    let text = screen.text();
    let rows = box_rows(&text);
    assert!(
        rows[3].is_empty() && rows[2].starts_with("           "),
        "\n{text}"
    );
    let continued = rows[2].trim_start();
    assert_eq!(rows[2].len() - continued.len(), 11, "kept indent:\n{text}");
    assert_eq!(
        format!("{} {continued}", rows[1].trim_end()),
        full,
        "\n{text}"
    );
    let mut want = vec![rows[0].clone(), rows[1].clone(), rows[2].clone()];
    want.resize(20, String::new());
    assert_eq!(rows, want, "\n{text}");

    // All levels again, then search: the view goes to the line, the match
    // is named under the box.
    screen.press("f");
    screen.press("f");
    screen.wait_for("all levels", |s| {
        !s.contains("error+") && !s.contains("warn+")
    });
    screen.press("/");
    screen.press("expected key");
    screen.press("\r");
    screen.wait_for("the match", |s| {
        s.contains("/expected key  n older  N newer") && s.contains("paused")
    });
    let text = screen.text();
    assert!(
        box_rows(&text).iter().any(|r| r.contains("W env_file:")),
        "{text}"
    );

    screen.press("q");
    assert!(screen.child.wait().unwrap().success());
}

#[test]
fn the_audit_trail_at_80x24_names_what_the_console_and_the_cli_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);
    let mut screen = Console::start(24, 80, &[("OPENCLAW_STATE_DIR", state.as_os_str())]);
    screen.wait_for("connected", |s| s.contains("connected"));

    // The console turns the kill switch on (Config, fourth row).
    screen.press("c");
    screen.wait_for("the config screen", |s| s.contains("off (unset)"));
    for _ in 0..3 {
        screen.press("j");
    }
    screen.press("\r");
    screen.wait_for("the kill switch on", |s| s.contains("ON (.env)"));
    // Another client changes the config.
    let set = support::molt()
        .args(["config", "set", "update.channel", "beta", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(set.status.success(), "{set:?}");

    screen.press("a");
    screen.wait_for("both changes listed", |s| {
        s.contains("History · audit trail")
            && s.contains("config.patch")
            && s.contains("update.noAutoUpdate.set")
    });
    let text = screen.text();
    let rows = box_rows(&text);
    assert!(rows[0].starts_with(" when     what"), "{text}");
    // Newest first: the CLI's patch, then the console's kill switch, both
    // answered ok.
    let uid = std::fs::metadata(&state)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    for (row, what) in rows[1..3]
        .iter()
        .zip(["config.patch", "update.noAutoUpdate.set"])
    {
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            fields[..4],
            ["0s", "ago", what, "ok"][..],
            "{row:?} in\n{text}"
        );
        assert!(row.contains("gateway-client"), "{row:?}");
    }
    // The selected entry in full, its values wrapped under their column.
    let detail: Vec<&str> = rows
        .iter()
        .skip(3)
        .map(String::as_str)
        .filter(|r| !r.is_empty())
        .collect();
    assert!(
        detail[0].starts_with("  what        config.patch  (2 in all)"),
        "{text}"
    );
    assert!(
        detail[1].starts_with("  when        20") && detail[1].ends_with("ago"),
        "{text}"
    );
    // Over the local socket as this uid, no token: its owner.
    assert!(
        detail[2].starts_with(&format!(
            "  by          client gateway-client at the local socket, uid {uid} ("
        )) && detail[2].ends_with(" with"),
        "{text}"
    );
    assert_eq!(detail[3], "              local-owner", "{text}");
    assert_eq!(
        detail[4], "  params      {\"changes\":{\"update.channel\":\"beta\"}}",
        "{text}"
    );
    assert_eq!(detail[5], "  outcome     ok", "{text}");
    assert_eq!(detail[6], format!("  moltd pid   {}", daemon.pid), "{text}");

    // Down: the console's own change.
    screen.press("j");
    screen.wait_for("the kill switch entry", |s| {
        s.contains("update.noAutoUpdate.set  (2 in all)")
    });
    assert!(screen.text().contains("params      {\"enabled\":true}"));

    screen.press("q");
    assert!(screen.child.wait().unwrap().success());
}
