//! `update-runs.jsonl`: the durable record of every update run (SPEC §6.6).
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
//! empty, with a warning.
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
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use molt_protocol::ids::RunId;
use molt_protocol::update::RunRecord;

use crate::fsutil::{FILE_MODE, path_error, sync_parent, write_atomic};
use crate::gateway::unix_ms;

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

/// How often open-lock-check is retried when compactions keep replacing
/// the file under us; each retry means another process made progress.
/// Bounded only so that a file system with unstable inode numbers cannot
/// spin forever.
const MAX_REOPENS: usize = 1000;

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

    /// Appends `run` as its new state and fsyncs it. Creates the file (0600)
    /// if missing; its directory must exist. A failed compaction afterwards
    /// is logged, not returned: the record itself is durable by then.
    pub fn record(&self, run: &RunRecord) -> Result<(), RunsError> {
        let mut line = serde_json::to_vec(run).map_err(|source| RunsError::Serialize {
            run_id: run.run_id.clone(),
            source,
        })?;
        line.push(b'\n');

        let file = self.open_for_append()?;
        let at = |action: &'static str| move |e: io::Error| path_error(e, action, &self.path);
        let scan = scan_newlines(&file).map_err(at("read"))?;
        let mut lines = scan.lines;
        let mut out = Vec::with_capacity(line.len() + 1);
        if scan.tail_start < scan.len {
            // The last line has no newline: a crash interrupted its write,
            // or (rarely) only the newline was lost.
            let tail = read_range(&file, scan.tail_start, scan.len).map_err(at("read"))?;
            if serde_json::from_slice::<RunRecord>(&tail).is_ok() {
                out.push(b'\n');
                lines += 1;
            } else {
                tracing::warn!(
                    "{}: dropping a torn last line ({} bytes) left by an interrupted write",
                    self.path.display(),
                    tail.len()
                );
                file.set_len(scan.tail_start).map_err(at("truncate"))?;
            }
        }
        out.extend_from_slice(&line);
        (&file).write_all(&out).map_err(at("append to"))?;
        file.sync_data().map_err(at("fsync"))?;
        lines += 1;

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
        let mut cache = self.latest.lock().unwrap_or_else(|e| e.into_inner());
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
        let Some(file) = self.open_for_read()? else {
            return Ok(Vec::new());
        };
        let mut latest = Latest::default();
        visit_lines(BufReader::new(&file), &self.path, |record, _| {
            latest.upsert(record.run_id.clone(), record);
        })
        .map_err(|e| path_error(e, "read", &self.path))?;
        Ok(latest.order)
    }

    /// Rewrites the file with what [`Retention`] keeps. The caller holds the
    /// exclusive lock on the current inode; waiters on it will see the path
    /// name a new inode and reopen.
    fn compact_locked(&self, file: &File) -> io::Result<()> {
        let mut latest: Latest<(bool, Vec<u8>)> = Latest::default();
        let reader = BufReader::new(ReadAt { file, pos: 0 });
        visit_lines(reader, &self.path, |record, raw| {
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

    /// Opens the file for appending, creating it if needed, with the
    /// exclusive lock held on the inode the path names.
    fn open_for_append(&self) -> io::Result<File> {
        let path = &self.path;
        for _ in 0..MAX_REOPENS {
            let mut options = OpenOptions::new();
            options.read(true).append(true);
            let (file, created) = match options.open(path) {
                Ok(file) => (file, false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match options.create_new(true).mode(FILE_MODE).open(path) {
                        Ok(file) => (file, true),
                        // Another writer created it first; open theirs.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(path_error(e, "create", path)),
                    }
                }
                Err(e) => return Err(path_error(e, "open", path)),
            };
            if created {
                // The umask may have narrowed the mode; make the new name durable.
                file.set_permissions(Permissions::from_mode(FILE_MODE))
                    .map_err(|e| path_error(e, "chmod", path))?;
                sync_parent(path)?;
            }
            file.lock().map_err(|e| path_error(e, "lock", path))?;
            if names_inode(path, &file)? {
                return Ok(file);
            }
        }
        Err(path_error(replaced_error(), "open", path))
    }

    /// Opens the file for reading with a shared lock on the inode the path
    /// names; `None` if there is no file yet.
    fn open_for_read(&self) -> io::Result<Option<File>> {
        let path = &self.path;
        for _ in 0..MAX_REOPENS {
            let file = match File::open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(path_error(e, "open", path)),
            };
            file.lock_shared()
                .map_err(|e| path_error(e, "lock", path))?;
            if names_inode(path, &file)? {
                return Ok(Some(file));
            }
        }
        Err(path_error(replaced_error(), "open", path))
    }
}

fn replaced_error() -> io::Error {
    io::Error::other("the file kept being replaced while opening it")
}

/// Whether `path` still names the inode `file` has open (a compaction
/// renames a new file over it).
fn names_inode(path: &Path, file: &File) -> io::Result<bool> {
    let open = file.metadata().map_err(|e| path_error(e, "stat", path))?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == open.dev() && now.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(path_error(e, "stat", path)),
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

struct NewlineScan {
    /// Complete lines (newline-terminated).
    lines: u64,
    /// Offset just after the last newline: where a torn tail starts.
    tail_start: u64,
    len: u64,
}

fn scan_newlines(file: &File) -> io::Result<NewlineScan> {
    let mut reader = ReadAt { file, pos: 0 };
    let mut chunk = vec![0u8; 64 * 1024];
    let (mut lines, mut tail_start, mut len) = (0u64, 0u64, 0u64);
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for (i, b) in chunk[..n].iter().enumerate() {
            if *b == b'\n' {
                lines += 1;
                tail_start = len + i as u64 + 1;
            }
        }
        len += n as u64;
    }
    Ok(NewlineScan {
        lines,
        tail_start,
        len,
    })
}

fn read_range(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut buf, start)?;
    Ok(buf)
}

/// Positional reads, so the append fd's offset does not matter.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
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
mod tests {
    use super::*;
    use molt_protocol::update::{
        InstallMode, RunOwner, RunPhase, RunTarget, RunTrigger, VersionRef,
    };

    fn run(id: &str, phase: RunPhase, at: u64) -> RunRecord {
        RunRecord {
            run_id: RunId::from(id),
            trigger: RunTrigger::Manual,
            actor: Some("operator".to_owned()),
            phase,
            mode: InstallMode::Npm,
            root: Some("/usr/lib/node_modules/moltd".to_owned()),
            target: RunTarget {
                version: Some("2.0.0".to_owned()),
                ..RunTarget::default()
            },
            before: VersionRef::new("1.0.0"),
            after: VersionRef::default(),
            note: None,
            reason: None,
            steps: Vec::new(),
            owner: RunOwner {
                pid: 4242,
                started_at: 1_700_000_000_000,
            },
            requested_at: 1_700_000_000_000,
            updated_at: at,
            finished_at: phase.is_terminal().then_some(at),
        }
    }

    fn store(dir: &tempfile::TempDir) -> RunStore {
        RunStore::new(dir.path().join("update-runs.jsonl"))
    }

    fn ids_and_phases(runs: &[RunRecord]) -> Vec<(&str, RunPhase)> {
        runs.iter().map(|r| (r.run_id.as_str(), r.phase)).collect()
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    use RunPhase::*;

    #[test]
    fn a_missing_file_reads_as_no_runs() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        assert_eq!(s.latest(), None);
        assert_eq!(s.get(&RunId::from("run-1")), None);
        assert!(s.history(10).is_empty());
        assert!(s.non_terminal().is_empty());
        assert!(!s.path().exists(), "reading creates nothing");
    }

    #[test]
    fn the_newest_run_follows_writes_by_another_store_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let reader = store(&dir);
        let writer = store(&dir);
        assert_eq!(reader.latest(), None);
        writer.record(&run("run-1", Running, 1)).unwrap();
        assert_eq!(reader.latest().unwrap().phase, Running);
        assert_eq!(reader.latest().unwrap().phase, Running, "from the cache");
        writer.record(&run("run-1", Verified, 2)).unwrap();
        assert_eq!(reader.latest().unwrap().phase, Verified);
        writer.record(&run("run-2", Requested, 3)).unwrap();
        assert_eq!(reader.latest().unwrap().run_id, RunId::from("run-2"));
    }

    #[test]
    fn each_change_is_one_line_and_reads_give_the_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.record(&run("run-1", Requested, 1)).unwrap();
        s.record(&run("run-1", Running, 2)).unwrap();
        s.record(&run("run-2", Requested, 3)).unwrap();

        let raw = lines(s.path());
        assert_eq!(raw.len(), 3);
        let second: serde_json::Value = serde_json::from_str(&raw[1]).unwrap();
        assert_eq!(second["runId"], "run-1");
        assert_eq!(second["phase"], "running");
        let mode = fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        assert_eq!(s.get(&RunId::from("run-1")), Some(run("run-1", Running, 2)));
        assert_eq!(s.latest(), Some(run("run-2", Requested, 3)));
    }

    #[test]
    fn history_is_newest_first_with_one_entry_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        for (id, phase, at) in [
            ("run-1", Requested, 1),
            ("run-2", Requested, 2),
            ("run-1", Running, 3),
            ("run-1", Verified, 4),
            ("run-3", Requested, 5),
            ("run-2", Failed, 6),
        ] {
            s.record(&run(id, phase, at)).unwrap();
        }
        // Creation order, not last-update order: run-2 changed last but
        // started before run-3.
        assert_eq!(
            ids_and_phases(&s.history(10)),
            [("run-3", Requested), ("run-2", Failed), ("run-1", Verified)]
        );
        assert_eq!(
            ids_and_phases(&s.history(2)),
            [("run-3", Requested), ("run-2", Failed)]
        );
        assert!(s.history(0).is_empty());
        assert_eq!(ids_and_phases(&s.non_terminal()), [("run-3", Requested)]);
        assert_eq!(s.latest().unwrap().run_id.as_str(), "run-3");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_off_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.record(&run("run-1", Requested, 1)).unwrap();
        s.record(&run("run-1", Running, 2)).unwrap();
        // A crash in the middle of the next write.
        let full = serde_json::to_string(&run("run-1", Verified, 3)).unwrap();
        let torn = &full[..full.len() / 2];
        fs::OpenOptions::new()
            .append(true)
            .open(s.path())
            .unwrap()
            .write_all(torn.as_bytes())
            .unwrap();

        assert_eq!(ids_and_phases(&s.history(10)), [("run-1", Running)]);
        assert_eq!(ids_and_phases(&s.non_terminal()), [("run-1", Running)]);

        s.record(&run("run-2", Requested, 4)).unwrap();
        let raw = lines(s.path());
        assert_eq!(raw.len(), 3, "fragment gone, new line whole: {raw:?}");
        for line in &raw {
            serde_json::from_str::<RunRecord>(line).unwrap();
        }
        assert_eq!(
            ids_and_phases(&s.history(10)),
            [("run-2", Requested), ("run-1", Running)]
        );
    }

    #[test]
    fn a_whole_last_line_missing_only_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.record(&run("run-1", Requested, 1)).unwrap();
        let line = serde_json::to_string(&run("run-1", Running, 2)).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(s.path())
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        assert_eq!(s.latest().unwrap().phase, Running);

        s.record(&run("run-2", Requested, 3)).unwrap();
        assert_eq!(lines(s.path()).len(), 3);
        assert_eq!(
            ids_and_phases(&s.history(10)),
            [("run-2", Requested), ("run-1", Running)]
        );
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.record(&run("run-1", Requested, 1)).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(s.path()).unwrap();
        f.write_all(b"not json\n\n{\"runId\":\"run-9\"}\n").unwrap();
        s.record(&run("run-1", Verified, 2)).unwrap();
        assert_eq!(ids_and_phases(&s.history(10)), [("run-1", Verified)]);
    }

    #[test]
    fn an_unreadable_file_reads_as_empty_and_record_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let path = dir.path().join("update-runs.jsonl");
        fs::create_dir(&path).unwrap();
        let s = RunStore::new(&path);
        assert!(s.history(10).is_empty());
        let err = s.record(&run("run-1", Requested, 1)).unwrap_err();
        assert!(err.to_string().contains("update-runs.jsonl"), "{err}");
    }

    #[test]
    fn compaction_keeps_the_latest_state_of_the_newest_runs_and_every_unfinished_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = RunStore::with_retention(
            dir.path().join("update-runs.jsonl"),
            Retention {
                max_lines: 10,
                max_bytes: u64::MAX,
                keep_runs: 2,
            },
        );
        // run-1 never finishes (its owner died); the rest do. A newer moltd
        // added a field to run-3's records: compaction keeps it.
        s.record(&run("run-1", Requested, 1)).unwrap();
        s.record(&run("run-1", Running, 2)).unwrap();
        for (i, id) in ["run-2", "run-3", "run-4", "run-5"].iter().enumerate() {
            let at = 10 * (i as u64 + 1);
            for (phase, dt) in [(Requested, 0), (Running, 1), (Verified, 2)] {
                if *id == "run-3" {
                    let mut v = serde_json::to_value(run(id, phase, at + dt)).unwrap();
                    v["futureField"] = serde_json::json!(true);
                    let mut line = serde_json::to_vec(&v).unwrap();
                    line.push(b'\n');
                    // Through the file, as another moltd would write it.
                    fs::OpenOptions::new()
                        .append(true)
                        .open(s.path())
                        .unwrap()
                        .write_all(&line)
                        .unwrap();
                } else {
                    s.record(&run(id, phase, at + dt)).unwrap();
                }
            }
        }
        // Line 11 (run-4 verified) triggered compaction: run-1 (unfinished),
        // run-3 and run-4 (the newest two) kept with one line each; run-2
        // dropped. run-5's three lines came after.
        let raw = lines(s.path());
        assert_eq!(raw.len(), 6, "{raw:#?}");
        assert!(raw[1].contains("\"futureField\":true"), "{}", raw[1]);
        assert_eq!(
            ids_and_phases(&s.history(10)),
            [
                ("run-5", Verified),
                ("run-4", Verified),
                ("run-3", Verified),
                ("run-1", Running)
            ]
        );
        assert_eq!(s.get(&RunId::from("run-2")), None);
        assert_eq!(ids_and_phases(&s.non_terminal()), [("run-1", Running)]);
        let mode = fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files");
    }

    #[test]
    fn select_kept_table() {
        let r = |max_bytes, keep_runs| Retention {
            max_lines: 1000,
            max_bytes,
            keep_runs,
        };
        let t = |bytes| (true, bytes);
        let open = |bytes| (false, bytes);
        type Case<'a> = (&'a [(bool, u64)], Retention, &'a [bool]);
        let cases: &[Case] = &[
            (&[], r(100, 2), &[]),
            (&[t(1), t(1), t(1)], r(100, 2), &[false, true, true]),
            (&[open(1), t(1), t(1)], r(100, 1), &[true, false, true]),
            // Over half of max_bytes: drop the oldest finished runs first.
            (&[t(30), t(30), t(30)], r(120, 3), &[false, true, true]),
            (&[t(30), open(30), t(30)], r(80, 3), &[false, true, true]),
            // The newest run stays even alone over budget.
            (&[t(30), t(500)], r(100, 3), &[false, true]),
            // keep_runs is capped at half of max_lines.
            (
                &[t(1), t(1), t(1)],
                Retention {
                    max_lines: 4,
                    max_bytes: 100,
                    keep_runs: 10,
                },
                &[false, true, true],
            ),
        ];
        for (runs, retention, expected) in cases {
            assert_eq!(
                &select_kept(runs, retention),
                expected,
                "{runs:?} {retention:?}"
            );
        }
    }

    #[test]
    fn byte_bound_triggers_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = serde_json::to_vec(&run("run-0", Verified, 1))
            .unwrap()
            .len() as u64
            + 1;
        let s = RunStore::with_retention(
            dir.path().join("update-runs.jsonl"),
            Retention {
                max_lines: usize::MAX,
                max_bytes: line_len * 4,
                keep_runs: 100,
            },
        );
        for i in 0..5 {
            s.record(&run(&format!("run-{i}"), Verified, i)).unwrap();
        }
        // The fifth line crossed 4 lines' worth; compaction cut to half.
        assert_eq!(
            ids_and_phases(&s.history(10)),
            [("run-4", Verified), ("run-3", Verified)]
        );
    }

    /// `writers` threads, each with its own store (as two processes would
    /// have), each recording `runs_each` runs through three phases.
    fn record_concurrently(path: &Path, retention: Retention, writers: usize, runs_each: usize) {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let s = RunStore::with_retention(path, retention);
                std::thread::spawn(move || {
                    for i in 0..runs_each {
                        let id = format!("run-{w}-{i}");
                        for phase in [Requested, Running, Verified] {
                            s.record(&run(&id, phase, 1)).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn concurrent_appends_stay_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update-runs.jsonl");
        let retention = Retention {
            max_lines: usize::MAX,
            max_bytes: u64::MAX,
            keep_runs: usize::MAX,
        };
        record_concurrently(&path, retention, 8, 15);
        let raw = lines(&path);
        assert_eq!(raw.len(), 8 * 15 * 3);
        for line in &raw {
            serde_json::from_str::<RunRecord>(line).unwrap();
        }
        let all = RunStore::new(&path).history(usize::MAX);
        assert_eq!(all.len(), 8 * 15);
        assert!(all.iter().all(|r| r.phase == Verified));
    }

    #[test]
    fn concurrent_compactions_lose_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update-runs.jsonl");
        let retention = Retention {
            max_lines: 16,
            max_bytes: u64::MAX,
            keep_runs: 8,
        };
        record_concurrently(&path, retention, 8, 15);
        // Compaction never drops an unfinished run, so a lost append shows
        // up as a run stuck before `verified`.
        let all = RunStore::new(&path).history(usize::MAX);
        assert!(all.len() >= 8, "{}", all.len());
        let stuck: Vec<_> = all.iter().filter(|r| r.phase != Verified).collect();
        assert!(stuck.is_empty(), "{stuck:#?}");
        assert!(lines(&path).len() <= 16, "compacted");
    }

    #[test]
    fn run_ids_are_unique_and_sort_in_creation_order() {
        let ids: Vec<RunId> = (0..2000).map(|_| new_run_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "strictly increasing, so unique");
        let id = ids[0].as_str();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[0], "run");
        assert_eq!(parts[1].len(), 13);
        let ms: u64 = parts[1].parse().unwrap();
        assert!(ms.abs_diff(unix_ms()) < 60_000, "{id}");
        assert_eq!(parts[2].len(), 8);
        assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
}
