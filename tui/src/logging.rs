//! The console logs to a file only: stdout belongs to the terminal.

use std::fs::DirBuilder;
use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

/// File name prefix: `molt-console.log.YYYY-MM-DD`.
pub const LOG_FILE: &str = "molt-console.log";

/// Logs to `<state>/logs/`, or to a temp dir when the state dir does not
/// exist or is not writable. The filter comes from `MOLT_LOG` (default
/// `info`). Keep the guard alive until exit, it flushes the file.
pub fn init(state_dir: Option<&Path>) -> Option<(WorkerGuard, PathBuf)> {
    let candidates = state_dir
        .filter(|dir| dir.is_dir())
        .map(|dir| dir.join("logs"))
        .into_iter()
        .chain([std::env::temp_dir().join("molt-console")]);
    for dir in candidates {
        if let Some(appender) = appender(&dir) {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let filter =
                EnvFilter::try_from_env("MOLT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
            let installed = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
                .with_ansi(false)
                .try_init()
                .is_ok();
            return installed.then_some((guard, dir));
        }
    }
    None
}

fn appender(dir: &Path) -> Option<RollingFileAppender> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).ok()?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_FILE)
        .max_log_files(7)
        .build(dir)
        .ok()
}
