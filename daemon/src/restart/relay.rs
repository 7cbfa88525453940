//! The successor's stdout and stderr while it starts. They reach this
//! process through pipes, which it copies to its own stdout and stderr (so
//! the service manager's log still has every line) and keeps the head and
//! tail of: a successor that dies at start leaves its last words in the
//! failure a person reads later. The successor also inherits this
//! process's own stdout and stderr and takes them back when it reports
//! READY, so nothing it writes later depends on this process living on.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::output::HeadTail;

pub struct Relay {
    /// Our read ends, until [`Relay::start`].
    pipes: Option<[OwnedFd; 2]>,
    captured: [Arc<Mutex<HeadTail>>; 2],
    tasks: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Points `command`'s stdout and stderr at new pipes. Returns the relay
    /// and copies of this process's stdout and stderr, for the successor
    /// to take back at READY.
    pub fn plumb(command: &mut Command) -> io::Result<(Relay, (OwnedFd, OwnedFd))> {
        let (out_read, out_write) = io::pipe()?;
        let (err_read, err_write) = io::pipe()?;
        command.stdout(out_write).stderr(err_write);
        let own = (
            io::stdout().as_fd().try_clone_to_owned()?,
            io::stderr().as_fd().try_clone_to_owned()?,
        );
        let relay = Relay {
            pipes: Some([OwnedFd::from(out_read), OwnedFd::from(err_read)]),
            captured: Default::default(),
            tasks: Vec::new(),
        };
        Ok((relay, own))
    }

    /// Starts copying, once the command was spawned and dropped (its copies
    /// of the write ends closed, so the pipes end when the successor's do).
    /// The copies run until the successor closes its ends: at READY, or
    /// when it exits.
    pub fn start(&mut self) {
        let Some([stdout, stderr]) = self.pipes.take() else {
            return;
        };
        let targets: [Box<dyn AsyncWrite + Send + Unpin>; 2] =
            [Box::new(tokio::io::stdout()), Box::new(tokio::io::stderr())];
        for ((pipe, target), captured) in [stdout, stderr]
            .into_iter()
            .zip(targets)
            .zip(&self.captured)
        {
            match pipe::Receiver::from_owned_fd(pipe) {
                Ok(pipe) => {
                    let task = copy(pipe, target, Arc::clone(captured));
                    self.tasks.push(tokio::spawn(task));
                }
                Err(e) => tracing::warn!("cannot relay the successor's output: {e}"),
            }
        }
    }

    /// What the successor printed, once it exited: the copies end when the
    /// pipes do, or after `wait` when something it started still holds
    /// them open.
    pub async fn finish(self, wait: Duration) -> (HeadTail, HeadTail) {
        for mut task in self.tasks {
            if tokio::time::timeout(wait, &mut task).await.is_err() {
                task.abort();
            }
        }
        let [stdout, stderr] = self
            .captured
            .map(|captured| std::mem::replace(&mut *captured.lock(), HeadTail::new(None)));
        (stdout, stderr)
    }
}

async fn copy(
    mut pipe: pipe::Receiver,
    mut target: Box<dyn AsyncWrite + Send + Unpin>,
    captured: Arc<Mutex<HeadTail>>,
) {
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => {
                captured.lock().push(&chunk[..n]);
                // Our own output gone is no reason to stop keeping it.
                let _ = target.write_all(&chunk[..n]).await;
                let _ = target.flush().await;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("reading the successor's output: {e}");
                return;
            }
        }
    }
}
