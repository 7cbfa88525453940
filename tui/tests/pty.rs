//! The real `molt` binary in a pseudo-terminal, with no flags, against the
//! real `moltd`: navigate Overview → Config → Logs → help → quit. The
//! screen is the pty's output parsed by a terminal emulator; each step
//! waits for the text it expects to be drawn.

mod support;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use support::{Daemon, GATEWAY_ENV};

/// Guards against a hang; never used to wait for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

struct Screen {
    parser: vt100::Parser,
    bytes: mpsc::Receiver<Vec<u8>>,
    /// Everything the console wrote, for the restore check at the end.
    raw: Vec<u8>,
}

impl Screen {
    fn text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Feeds output until `want` holds, or the console stops writing.
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !want(&self.text()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.bytes.recv_timeout(left) {
                Ok(chunk) => {
                    self.parser.process(&chunk);
                    self.raw.extend_from_slice(&chunk);
                }
                Err(_) => panic!("never drawn: {what}\nscreen:\n{}", self.text()),
            }
        }
    }

    /// Reads to the end of the output (the console exited).
    fn drain(&mut self) {
        while let Ok(chunk) = self.bytes.recv_timeout(PATIENCE) {
            self.raw.extend_from_slice(&chunk);
        }
    }
}

#[test]
fn molt_with_no_flags_navigates_screens_and_restores_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_molt"));
    for var in GATEWAY_ENV {
        command.env_remove(var);
    }
    // No flags: the state dir is found the way an operator's shell has it.
    command.env("OPENCLAW_STATE_DIR", &state);
    command.env("TERM", "xterm-256color");
    command.env_remove("NO_COLOR");
    let mut child = pty.slave.spawn_command(command).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut keys = pty.master.take_writer().unwrap();
    let (tx, bytes) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        parser: vt100::Parser::new(24, 80, 0),
        bytes,
        raw: Vec::new(),
    };
    let mut press = |key: &str| {
        keys.write_all(key.as_bytes())
            .and_then(|()| keys.flush())
            .unwrap()
    };

    let pid_row = format!("pid          {},", daemon.pid);
    screen.wait_for("the overview of the running daemon", |s| {
        s.contains("connected") && s.contains(&pid_row)
    });
    assert!(screen.text().contains(&format!("moltd {}", daemon.version)));

    press("c");
    screen.wait_for("the config screen", |s| {
        s.contains("update.channel") && s.contains("openclaw.json")
    });
    assert!(screen.text().contains("deferral timeout"));

    press("l");
    screen.wait_for("the logs screen following", |s| {
        s.contains("Logs") && s.contains("following") && s.contains("molt_daemon")
    });

    press("?");
    screen.wait_for("the help", |s| s.contains("show / hide this help"));

    press("q");
    let status = child.wait().unwrap();
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
