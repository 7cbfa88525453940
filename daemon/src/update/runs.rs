//! `update-runs.jsonl`: the durable record of every update run
//! (docs/updating.md, "After the restart").
//!
//! Every state change of a run appends one line, the run's whole
//! [`RunRecord`] as JSON. The latest line of a run is its state; a run's
//! place in history is where its first line is (creation order, immune to a
//! clock that jumps).
//!
//! Crash safety: a line is written with one `write` on an `O_APPEND` file
//! and fsynced before [`RunStore::record`] returns, so a crash loses at most
//! the change being written and never touches earlier lines. A reader skips
//! a torn last line (and any line that does not parse) with a warning; the
//! next append cuts the torn fragment off so it cannot glue itself to the
//! new line. Reading never fails the daemon: an unreadable file reads as
//! empty, with a warning, and so does one larger than
//! [`RunStore::read_limit`], which moltd's own compaction never leaves.
//!
//! Concurrency: during a respawn handoff two processes share the state dir,
//! so writers take an exclusive `flock` and readers a shared one. Compaction
//! replaces the file by rename; a process that locked the old inode notices
//! (the path names another inode now) and reopens, so no append is lost to
//! a concurrent compaction.
//!
//! Compaction: when the file passes [`Retention::max_lines`] lines or
//! [`Retention::max_bytes`] bytes, it is rewritten atomically
//! ([`write_atomic`]) with each run's latest line (kept byte for byte, so
//! fields a newer moltd added survive) for the newest
//! [`Retention::keep_runs`] runs, plus every run that is not terminal (a
//! stuck run must stay visible until it is resolved).
//!
//! All methods block (flock, fsync); call them from `spawn_blocking` in
//! async code.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use molt_protocol::ids::RunId;
use molt_protocol::update::RunRecord;
use parking_lot::Mutex;

use crate::clock::unix_ms;
use crate::fsutil::{MAX_STATE_FILE_BYTES, append_log, path_error, read_all_bounded, write_atomic};

/// When to compact and what to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Compact once the file has more lines than this.
    pub max_lines: usize,
    /// Compact once the file is larger than this. Compaction then also drops
    /// the oldest finished runs until the file is at most half this size, so
    /// a few huge records (long step output) cannot make every append
    /// rewrite the file.
    pub max_bytes: u64,
    /// How many of the newest runs compaction keeps (non-terminal runs are
    /// kept regardless). At most `max_lines / 2` are kept, so that an append
    /// right after a compaction does not compact again.
    pub keep_runs: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_lines: 2000,
            max_bytes: 16 * 1024 * 1024,
            keep_runs: 500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("cannot serialize update run {run_id}: {source}")]
    Serialize {
        run_id: RunId,
        #[source]
        source: serde_json::Error,
    },
    /// An I/O failure; the message names the file.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The run log at one path. Cheap to clone; holds no open file, so several
/// stores (or processes) on one path cooperate through the file's locks.
#[derive(Debug, Clone)]
pub struct RunStore {
    path: PathBuf,
    retention: Retention,
    /// The newest run and the version of the file it was read from: every
    /// handshake reports it, and the file rarely changes.
    latest: Arc<Mutex<Option<LatestSeen>>>,
}

/// The newest run as read from one version of the file.
type LatestSeen = (FileVersion, Option<RunRecord>);

/// One version of the file: an append changes its length and mtime, a
/// compaction its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileVersion {
    fn of(meta: &fs::Metadata) -> Self {
        FileVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

impl RunStore {
    /// A store at `path` (normally `StatePaths::runs_path`) with the default
    /// [`Retention`]. Nothing is read or created until used.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_retention(path, Retention::default())
    }

    pub fn with_retention(path: impl Into<PathBuf>, retention: Retention) -> Self {
        Self {
            path: path.into(),
            retention,
            latest: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The largest file read back: twice what compaction lets it grow to,
    /// so only a file moltd did not write is refused.
    pub fn read_limit(&self) -> u64 {
        self.retention
            .max_bytes
            .saturating_mul(2)
            .max(MAX_STATE_FILE_BYTES)
    }

    /// Appends `run` as its new state and fsyncs it. Creates the file (0600)
    /// if missing; its directory must exist. A failed compaction afterwards
    /// is logged, not returned: the record itself is durable by then.
    pub fn record(&self, run: &RunRecord) -> Result<(), RunsError> {
        let mut line = serde_json::to_vec(run).map_err(|source| RunsError::Serialize {
            run_id: run.run_id.clone(),
            source,
        })?;
        line.push(b'\n');

        let file = append_log::open_for_append(&self.path)?;
        let at = |action: &'static str| move |e: io::Error| path_error(e, action, &self.path);
        let lines = append_log::append_line(&file, &self.path, &line, |tail| {
            serde_json::from_slice::<RunRecord>(tail).is_ok()
        })?;

        let len = file.metadata().map_err(at("stat"))?.len();
        let over = lines > self.retention.max_lines as u64 || len > self.retention.max_bytes;
        if over && let Err(err) = self.compact_locked(&file) {
            tracing::warn!("compacting {}: {err}", self.path.display());
        }
        Ok(())
    }

    /// The latest state of `run_id`.
    pub fn get(&self, run_id: &RunId) -> Option<RunRecord> {
        self.load().into_iter().find(|r| &r.run_id == run_id)
    }

    /// The newest run, in its latest state. Read again only when the file
    /// changed since the last call (by this process or another).
    pub fn latest(&self) -> Option<RunRecord> {
        let version = match fs::metadata(&self.path) {
            Ok(meta) => FileVersion::of(&meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => return self.load().pop(),
        };
        let mut cache = self.latest.lock();
        if let Some((seen, run)) = cache.as_ref()
            && *seen == version
        {
            return run.clone();
        }
        let run = self.load().pop();
        *cache = Some((version, run.clone()));
        run
    }

    /// Up to `limit` runs, newest first, each in its latest state.
    pub fn history(&self, limit: usize) -> Vec<RunRecord> {
        let mut runs = self.load();
        runs.reverse();
        runs.truncate(limit);
        runs
    }

    /// Runs whose latest state is not terminal, newest first. At start,
    /// these are the runs to resolve if their owner is dead.
    pub fn non_terminal(&self) -> Vec<RunRecord> {
        let mut runs = self.load();
        runs.retain(|r| !r.phase.is_terminal());
        runs.reverse();
        runs
    }

    /// Each run's latest state, oldest first. Never fails: an unreadable
    /// file reads as empty, with a warning.
    fn load(&self) -> Vec<RunRecord> {
        match self.try_load() {
            Ok(runs) => runs,
            Err(err) => {
                tracing::warn!("reading update runs: {err}; showing none");
                Vec::new()
            }
        }
    }

    fn try_load(&self) -> io::Result<Vec<RunRecord>> {
        let Some(file) = append_log::open_for_read(&self.path)? else {
            return Ok(Vec::new());
        };
        let bytes = read_all_bounded(&file, &self.path, self.read_limit())?;
        let mut latest = Latest::default();
        visit_lines(&bytes[..], &self.path, |record, _| {
            latest.upsert(record.run_id.clone(), record);
        })
        .map_err(|e| path_error(e, "read", &self.path))?;
        Ok(latest.order)
    }

    /// Rewrites the file with what [`Retention`] keeps. The caller holds the
    /// exclusive lock on the current inode; waiters on it will see the path
    /// name a new inode and reopen.
    fn compact_locked(&self, file: &File) -> io::Result<()> {
        let bytes = read_all_bounded(file, &self.path, self.read_limit())?;
        let mut latest: Latest<(bool, Vec<u8>)> = Latest::default();
        visit_lines(&bytes[..], &self.path, |record, raw| {
            latest.upsert(record.run_id, (record.phase.is_terminal(), raw.to_vec()));
        })
        .map_err(|e| path_error(e, "read", &self.path))?;

        let sizes: Vec<(bool, u64)> = latest
            .order
            .iter()
            .map(|(terminal, raw)| (*terminal, raw.len() as u64 + 1))
            .collect();
        let keep = select_kept(&sizes, &self.retention);
        let mut out = Vec::new();
        for ((_, raw), keep) in latest.order.iter().zip(&keep) {
            if *keep {
                out.extend_from_slice(raw);
                out.push(b'\n');
            }
        }
        write_atomic(&self.path, &out)?;
        let kept = keep.iter().filter(|k| **k).count();
        tracing::info!(
            "compacted {}: kept {kept} of {} runs",
            self.path.display(),
            keep.len()
        );
        Ok(())
    }
}

/// Values keyed by run id, in order of each id's first appearance.
struct Latest<T> {
    order: Vec<T>,
    index: HashMap<RunId, usize>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Latest<T> {
    fn upsert(&mut self, id: RunId, value: T) {
        match self.index.get(&id) {
            Some(&i) => self.order[i] = value,
            None => {
                self.index.insert(id, self.order.len());
                self.order.push(value);
            }
        }
    }
}

/// Which runs compaction keeps, given `(is_terminal, line bytes)` per run,
/// oldest first: the newest `keep_runs` (at most `max_lines / 2`), every
/// non-terminal run, then the oldest terminal runs are dropped while the
/// result is over half of `max_bytes`. The newest run is always kept.
fn select_kept(runs: &[(bool, u64)], retention: &Retention) -> Vec<bool> {
    let n = runs.len();
    let keep_runs = retention.keep_runs.min(retention.max_lines / 2).max(1);
    let newest_from = n.saturating_sub(keep_runs);
    let mut keep: Vec<bool> = runs
        .iter()
        .enumerate()
        .map(|(i, (terminal, _))| i >= newest_from || !terminal)
        .collect();
    let budget = retention.max_bytes / 2;
    let mut total: u64 = runs
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|((_, bytes), _)| bytes)
        .sum();
    for i in 0..n.saturating_sub(1) {
        if total <= budget {
            break;
        }
        if keep[i] && runs[i].0 {
            keep[i] = false;
            total -= runs[i].1;
        }
    }
    keep
}

/// Calls `f` with each line that parses as a [`RunRecord`] (and its raw
/// bytes, without the newline). A last line without a newline that does not
/// parse is a torn write; other bad lines are counted; both are logged.
fn visit_lines(
    mut reader: impl BufRead,
    path: &Path,
    mut f: impl FnMut(RunRecord, &[u8]),
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut bad = 0usize;
    let mut first_bad: Option<(usize, serde_json::Error)> = None;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let complete = buf.last() == Some(&b'\n');
        let content = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<RunRecord>(content) {
            Ok(record) => f(record, content),
            Err(err) if !complete => tracing::warn!(
                "{}: ignoring a torn last line ({} bytes): {err}",
                path.display(),
                content.len()
            ),
            Err(err) => {
                bad += 1;
                first_bad.get_or_insert((line_no, err));
            }
        }
    }
    if let Some((line, err)) = first_bad {
        tracing::warn!(
            "{}: ignoring {bad} line(s) that do not parse as update runs (first: line {line}: {err})",
            path.display()
        );
    }
    Ok(())
}

/// A fresh run id, `run-<unix ms, 13 digits>-<8 hex>`: ids sort by creation
/// time (strictly within this process, even within one millisecond or when
/// the clock steps back) and the random part keeps two processes apart.
pub fn new_run_id() -> RunId {
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = unix_ms();
    let prev = LAST_MS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    let ms = now.max(prev + 1);
    let mut random = [0u8; 4];
    if getrandom::fill(&mut random).is_err() {
        // No OS randomness: the pid still separates processes.
        random = std::process::id().to_le_bytes();
    }
    RunId(format!("run-{ms:013}-{}", hex::encode(random)))
}

#[cfg(test)]
mod tests;
