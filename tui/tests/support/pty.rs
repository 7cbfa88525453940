//! The real `molt` binary in a pseudo-terminal: the screen is its output
//! parsed by a terminal emulator, and each wait is for text to be drawn.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, PtySize, native_pty_system};

use super::GATEWAY_ENV;

/// Guards against a hang; never used to wait for something to happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Console {
    pub child: Box<dyn Child + Send + Sync>,
    keys: Box<dyn Write + Send>,
    /// Kept to resize the terminal.
    master: Box<dyn portable_pty::MasterPty + Send>,
    parser: vt100::Parser,
    bytes: mpsc::Receiver<Vec<u8>>,
    /// Everything the console wrote, for the restore check at the end.
    pub raw: Vec<u8>,
}

impl Console {
    /// `molt` with no flags in a `rows`×`cols` terminal; `env` on top of a
    /// clean environment (no gateway variables of the developer's).
    pub fn start(rows: u16, cols: u16, env: &[(&str, &std::ffi::OsStr)]) -> Console {
        Self::start_with(rows, cols, &[], env)
    }

    /// `molt <args>` in a `rows`×`cols` terminal.
    pub fn start_with(
        rows: u16,
        cols: u16,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Console {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_molt"));
        command.args(args);
        for var in GATEWAY_ENV {
            command.env_remove(var);
        }
        command.env("TERM", "xterm-256color");
        command.env_remove("NO_COLOR");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = pty.slave.spawn_command(command).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let keys = pty.master.take_writer().unwrap();
        let (tx, bytes) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Console {
            child,
            keys,
            master: pty.master,
            parser: vt100::Parser::new(rows, cols, 0),
            bytes,
            raw: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Makes the terminal `rows`×`cols`, as a window resize does: the
    /// console gets SIGWINCH and draws again at the new size.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        self.parser.screen_mut().set_size(rows, cols);
    }

    pub fn press(&mut self, key: &str) {
        self.keys
            .write_all(key.as_bytes())
            .and_then(|()| self.keys.flush())
            .unwrap();
    }

    /// Feeds output until `want` holds, or fails after [`PATIENCE`] of
    /// silence-or-mismatch.
    pub fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) {
        self.wait_for_within(what, PATIENCE, want);
    }

    pub fn wait_for_within(&mut self, what: &str, patience: Duration, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + patience;
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
    pub fn drain(&mut self) {
        while let Ok(chunk) = self.bytes.recv_timeout(PATIENCE) {
            self.raw.extend_from_slice(&chunk);
        }
    }
}
