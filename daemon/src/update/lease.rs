//! The install-root lease: one update run per install root at a time, across
//! threads, processes and the restart an update causes (SPEC §6.6).
//!
//! An in-memory single-flight flag is lost when the process that set it
//! restarts, and it cannot see a second daemon updating the same tree. The
//! lease is a file beside the install root naming the run and the process
//! that owns it: `{runId, owner: {pid, startedAt}, startTicks, bootId, since}`.
//!
//! # How it is made race-free
//!
//! The lease file doubles as its own mutex. Every operation (acquire,
//! release) opens it, takes an `flock` for the few syscalls it needs, reads
//! who holds the lease, decides, writes, and unlocks. flock is per open file
//! description, so two threads of one process contend exactly like two
//! processes, and the kernel drops the lock if a process dies inside the
//! critical section.
//!
//! The flock is *not* held for the run's duration: ownership is data in the
//! file, so a second requester reads who holds it (run id, pid) and answers
//! busy at once instead of waiting, and a dead owner is detected from that
//! data. The alternative, `create_new` + `hard_link` with unlink on
//! release, needs a second mechanism anyway to reclaim a dead owner's file
//! without two reclaimers deleting each other's fresh lease.
//!
//! The file is never unlinked; "free" is an empty file. Unlinking would let a
//! process that opened the old inode and waits on its flock act on a file no
//! one else sees. Content is rewritten in place, not by atomic rename, for
//! the same reason (the flock belongs to the inode). It is not fsynced: a
//! lease only means something while its owner runs, and a power loss
//! reboots every owner away (the boot id check below then frees it).
//!
//! # Who owns a lease: pid, start time, boot id
//!
//! `owner.pid` alone is ambiguous once pids are reused, so the file also
//! records the owner's kernel start time ([`process_start_time`], clock ticks
//! since boot) and the boot id. An owner is *dead* when the boot id differs
//! (the machine rebooted), no process has its pid, that process is a zombie,
//! or it has a different start time (the pid was reused). Only a dead
//! owner's lease is reclaimed. When liveness cannot be decided (no `/proc`,
//! or a lease written without a start time while the pid exists) the owner
//! counts as alive: a stuck lease is visible and fixable by an operator, two
//! updates of one tree are not.
//!
//! `RunOwner.startedAt` stays what the protocol says, Unix ms: it is for
//! humans and derived from the same kernel start time. Identity checks use
//! only the lease's `startTicks` and `bootId` fields, which are exact.
//!
//! # Across a restart
//!
//! The process running an update holds the lease until its handoff ends:
//! the successor reported ready, the handoff failed and was rolled back, or
//! the process stops. Then it releases the lease. The successor finishes the
//! run from the sentinel without the lease. A lease left by a process that
//! died (e.g. one that exited for a supervised restart) is reclaimed by the
//! next [`Lease::acquire`].
//!
//! All functions block briefly (an flock held for a few small reads and
//! writes).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use molt_protocol::ids::RunId;
use molt_protocol::update::RunOwner;
use serde::{Deserialize, Serialize};

use crate::fsutil::path_error;
use crate::gateway::unix_ms;

/// Suffix of the lease file's name; see [`lease_path`].
pub const LEASE_SUFFIX: &str = ".molt-update.lease";

/// A lease file larger than this is not ours; it is treated as garbage.
const MAX_LEASE_BYTES: u64 = 64 * 1024;

/// Where the lease for `install_root` lives: beside it, as
/// `<parent>/.<root name>.molt-update.lease`.
///
/// - Per install root, not per state dir: two daemons with different state
///   dirs can share one global install, and it is the tree they must not
///   mutate together.
/// - Beside the root, not inside it: the swap renames the root (live →
///   backup, stage → live), and a lease inside would move with the old tree.
///   The parent is where the stage is created, so the updater can write
///   there by construction.
/// - The parent is canonicalized so two spellings of one root (a symlinked
///   prefix, `..`) share one lease; the root's own name is kept as given,
///   since a symlinked root is what the swap renames.
pub fn lease_path(install_root: &Path) -> PathBuf {
    let root = std::path::absolute(install_root).unwrap_or_else(|_| install_root.to_path_buf());
    // A root ending in `..` or `.` has no file name; resolve it fully
    // (lexically if it does not exist).
    let root = match root.file_name() {
        Some(_) => root,
        None => fs::canonicalize(&root).unwrap_or_else(|_| super::swap::lexical(&root)),
    };
    match (root.parent(), root.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
            let mut file = OsString::from(".");
            file.push(name);
            file.push(LEASE_SUFFIX);
            parent.join(file)
        }
        // `/`: there is no beside.
        _ => root.join(LEASE_SUFFIX),
    }
}

/// What the lease file says: which run holds the install root, and who runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseHolder {
    pub run_id: RunId,
    pub owner: RunOwner,
    /// The owner's kernel start time in clock ticks since boot; with `pid`
    /// and `boot_id` it names one process. `None` where `/proc` is missing.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id` when the owner took the lease.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Unix ms when the current owner took the lease.
    pub since: u64,
}

impl LeaseHolder {
    /// A holder record for `owner`, identified from `/proc`. Fails if no
    /// process has the owner's pid: a lease for nobody would be reclaimed at
    /// once, which is never what the caller meant.
    fn identify(run_id: RunId, owner: RunOwner) -> Result<LeaseHolder, LeaseError> {
        let start_ticks = match probe(owner.pid) {
            Probe::Running(stat) if !stat.is_exited() => Some(stat.start_ticks),
            Probe::Running(_) | Probe::Gone => {
                return Err(LeaseError::OwnerNotRunning { pid: owner.pid });
            }
            Probe::Unknown => None,
        };
        Ok(LeaseHolder {
            run_id,
            owner,
            start_ticks,
            boot_id: boot_id().map(str::to_owned),
            since: unix_ms(),
        })
    }

    /// Whether the owning process still runs, judged from `/proc`.
    pub fn owner_state(&self) -> OwnerState {
        if let (Some(recorded), Some(current)) = (self.boot_id.as_deref(), boot_id())
            && recorded != current
        {
            return OwnerState::Dead(DeadReason::Rebooted);
        }
        match probe(self.owner.pid) {
            Probe::Gone => OwnerState::Dead(DeadReason::NoProcess),
            Probe::Unknown => OwnerState::Unknown,
            Probe::Running(stat) if stat.is_exited() => OwnerState::Dead(DeadReason::Exited),
            Probe::Running(stat) => match self.start_ticks {
                Some(ticks) if ticks != stat.start_ticks => OwnerState::Dead(DeadReason::PidReused),
                Some(_) => OwnerState::Alive,
                None => OwnerState::Unknown,
            },
        }
    }
}

/// Whether a lease's owner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    Alive,
    Dead(DeadReason),
    /// Cannot tell (no `/proc`, or no recorded start time); treated as alive.
    Unknown,
}

/// Why an owner counts as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The boot id changed: every process of the old boot is gone.
    Rebooted,
    /// No process has the pid.
    NoProcess,
    /// The pid is a zombie: it exited and waits to be reaped.
    Exited,
    /// A process has the pid but started at another time.
    PidReused,
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeadReason::Rebooted => "the machine rebooted since",
            DeadReason::NoProcess => "no such process",
            DeadReason::Exited => "the process exited",
            DeadReason::PidReused => "the pid now belongs to another process",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live (or undecidable) owner holds the lease: the second
    /// request gets `UNAVAILABLE` `update-in-progress` with this run id.
    #[error("update run {run_id} is in progress (pid {})", owner.pid)]
    Busy { run_id: RunId, owner: RunOwner },
    /// The file no longer says what this handle last wrote: another process
    /// reclaimed the lease (its owner was judged dead) or an operator
    /// cleared it. `found` is what it says now.
    #[error("lease {} for run {run_id} was taken over{}", path.display(), found_desc(found))]
    Lost {
        path: PathBuf,
        run_id: RunId,
        found: Option<Box<LeaseHolder>>,
    },
    #[error("process {pid} is not running, so it cannot own an update lease")]
    OwnerNotRunning { pid: u32 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn found_desc(found: &Option<Box<LeaseHolder>>) -> String {
    match found {
        Some(h) => format!(" by run {} (pid {})", h.run_id, h.owner.pid),
        None => " (it is free now)".to_owned(),
    }
}

/// A held lease. Dropping it releases the lease unless it was released
/// already (so a failed or panicking run never leaves the root locked while
/// the daemon lives on).
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    /// What this handle last wrote; the file must still say exactly this.
    holder: LeaseHolder,
    done: bool,
}

impl Lease {
    /// Takes the lease at `path` for `run_id`, owned by `owner` (normally
    /// [`current_owner`]). A lease whose owner is dead is reclaimed (logged);
    /// a live owner's lease, including this process's own for another run,
    /// is [`LeaseError::Busy`].
    pub fn acquire(path: &Path, run_id: RunId, owner: RunOwner) -> Result<Lease, LeaseError> {
        let holder = LeaseHolder::identify(run_id, owner)?;
        let file = open_locked(path)?;
        match read_slot(&file, path)? {
            Slot::Free => {}
            Slot::Held(current) => take_over_if_dead(path, &current, &holder.run_id)?,
        }
        write_slot(&file, path, &holder)?;
        Ok(Lease {
            path: path.to_path_buf(),
            holder,
            done: false,
        })
    }

    /// Frees the lease. Fails with [`LeaseError::Lost`] (and leaves the file
    /// alone) if the file names someone else.
    pub fn release(mut self) -> Result<(), LeaseError> {
        self.done = true;
        self.clear()
    }

    fn expect_ours(&self, file: &File) -> Result<(), LeaseError> {
        match read_slot(file, &self.path)? {
            Slot::Held(current) if current == self.holder => Ok(()),
            Slot::Held(current) => Err(self.lost(Some(current))),
            Slot::Free => Err(self.lost(None)),
        }
    }

    fn lost(&self, found: Option<LeaseHolder>) -> LeaseError {
        LeaseError::Lost {
            path: self.path.clone(),
            run_id: self.holder.run_id.clone(),
            found: found.map(Box::new),
        }
    }

    fn clear(&self) -> Result<(), LeaseError> {
        let file = open_locked(&self.path)?;
        self.expect_ours(&file)?;
        file.set_len(0)
            .map_err(|e| path_error(e, "clear lease file", &self.path))?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(err) = self.clear() {
            tracing::warn!(run_id = %self.holder.run_id, "releasing the update lease: {err}");
        }
    }
}

/// Ok if `current`'s owner is dead (logged: the lease is about to be
/// reclaimed), `Busy` otherwise.
fn take_over_if_dead(
    path: &Path,
    current: &LeaseHolder,
    for_run: &RunId,
) -> Result<(), LeaseError> {
    match current.owner_state() {
        OwnerState::Dead(reason) => {
            tracing::warn!(
                lease = %path.display(),
                stale_run = %current.run_id,
                stale_pid = current.owner.pid,
                run_id = %for_run,
                "reclaiming the update lease from a dead owner: {reason}"
            );
            Ok(())
        }
        OwnerState::Alive | OwnerState::Unknown => Err(LeaseError::Busy {
            run_id: current.run_id.clone(),
            owner: current.owner.clone(),
        }),
    }
}

enum Slot {
    Free,
    Held(LeaseHolder),
}

/// Opens (creating 0600 if needed) and exclusively flocks the lease file.
/// The lock is released when the returned file is dropped.
fn open_locked(path: &Path) -> Result<File, LeaseError> {
    let file = crate::fsutil::open_private(path, "open lease file")?;
    file.lock()
        .map_err(|e| path_error(e, "lock lease file", path))?;
    Ok(file)
}

/// Reads the holder. Empty means free. Content that does not parse can only
/// come from a writer that died between its two syscalls (or an operator's
/// edit); that writer is gone, so it counts as free, with a warning.
fn read_slot(file: &File, path: &Path) -> Result<Slot, LeaseError> {
    let mut bytes = Vec::new();
    file.read_at_to_end(&mut bytes)
        .map_err(|e| path_error(e, "read lease file", path))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Slot::Free);
    }
    if bytes.len() as u64 > MAX_LEASE_BYTES {
        tracing::warn!(lease = %path.display(), "lease file too large; treating it as free");
        return Ok(Slot::Free);
    }
    match serde_json::from_slice(&bytes) {
        Ok(holder) => Ok(Slot::Held(holder)),
        Err(err) => {
            tracing::warn!(lease = %path.display(), "lease file does not parse ({err}); treating it as free");
            Ok(Slot::Free)
        }
    }
}

/// Writes `holder` over the file's content in place (see the module docs on
/// why not by rename). Overwrite, then trim: if the write fails the old
/// content is restored, so a failure (e.g. a full disk) leaves the previous
/// holder in place rather than an empty, free-looking file.
fn write_slot(file: &File, path: &Path, holder: &LeaseHolder) -> Result<(), LeaseError> {
    let mut bytes = serde_json::to_vec(holder).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let mut old = Vec::new();
    file.read_at_to_end(&mut old)?;
    let write = |content: &[u8]| -> io::Result<()> {
        file.write_all_at(content, 0)?;
        file.set_len(content.len() as u64)
    };
    if let Err(err) = write(&bytes) {
        let _ = write(&old);
        return Err(path_error(err, "write lease file", path).into());
    }
    Ok(())
}

trait ReadAtToEnd {
    fn read_at_to_end(&self, buf: &mut Vec<u8>) -> io::Result<()>;
}

impl ReadAtToEnd for File {
    fn read_at_to_end(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.read_at(&mut chunk, buf.len() as u64) {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if buf.len() as u64 > MAX_LEASE_BYTES {
                return Ok(());
            }
        }
    }
}

/// This process as a run owner: its pid and its start time in Unix ms
/// (derived from the kernel's start time; the time of the first call where
/// `/proc` is missing).
pub fn current_owner() -> RunOwner {
    static CACHE: OnceLock<RunOwner> = OnceLock::new();
    let pid = std::process::id();
    let fresh = || {
        process_owner(pid).unwrap_or_else(|| RunOwner {
            pid,
            started_at: unix_ms(),
        })
    };
    let cached = CACHE.get_or_init(fresh);
    if cached.pid == pid {
        cached.clone()
    } else {
        // A forked child (moltd never forks without exec, but be exact).
        fresh()
    }
}

/// Another process as a run owner, e.g. to tell whether a run's recorded
/// owner still runs. `None` if it does not run or `/proc` cannot say when it
/// started.
pub fn process_owner(pid: u32) -> Option<RunOwner> {
    let ticks = process_start_time(pid)?;
    Some(RunOwner {
        pid,
        started_at: ticks_to_unix_ms(ticks)?,
    })
}

/// Kernel start time of `pid`: field 22 of `/proc/<pid>/stat`, in clock
/// ticks since boot. An identity, not a wall-clock time: with the pid (and
/// the boot id) it names exactly one process. `None` if there is no such
/// process or no `/proc`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    match probe(pid) {
        Probe::Running(stat) => Some(stat.start_ticks),
        Probe::Gone | Probe::Unknown => None,
    }
}

/// The fields of `/proc/<pid>/stat` the lease needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    state: u8,
    /// Field 22.
    start_ticks: u64,
}

impl ProcStat {
    fn is_exited(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and `)`, so fields are counted
/// from the *last* `)`.
fn parse_stat(line: &str) -> Option<ProcStat> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // Fields 4..=21 are 18 fields; the next one is field 22.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

enum Probe {
    Running(ProcStat),
    Gone,
    Unknown,
}

fn probe(pid: u32) -> Probe {
    /// Linux's ESRCH: the process exited while its stat was being read.
    const ESRCH: i32 = 3;
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(line) => parse_stat(&line).map_or(Probe::Unknown, Probe::Running),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH) => {
            if proc_available() {
                Probe::Gone
            } else {
                Probe::Unknown
            }
        }
        Err(_) => Probe::Unknown,
    }
}

fn proc_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/stat").exists())
}

/// This boot's id; it changes on every reboot.
fn boot_id() -> Option<&'static str> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .as_deref()
}

/// Unix ms of a kernel start time: boot time (`btime` in `/proc/stat`) plus
/// ticks / `CLK_TCK`. Good for display; not exact enough for identity, since
/// `btime` moves when the clock is stepped.
fn ticks_to_unix_ms(ticks: u64) -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1000 + ticks * 1000 / clock_ticks_per_sec())
}

/// `sysconf(_SC_CLK_TCK)` without libc: the kernel passes it to every
/// process in the aux vector as `AT_CLKTCK`. 100 on every mainstream Linux,
/// which is also the fallback.
fn clock_ticks_per_sec() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        const AT_CLKTCK: usize = 17;
        let word = std::mem::size_of::<usize>();
        let Ok(auxv) = fs::read("/proc/self/auxv") else {
            return 100;
        };
        let read_word = |b: &[u8]| b.try_into().ok().map(usize::from_ne_bytes);
        auxv.chunks_exact(2 * word)
            .find(|pair| read_word(&pair[..word]) == Some(AT_CLKTCK))
            .and_then(|pair| read_word(&pair[word..]))
            .map(|hz| hz as u64)
            .filter(|hz| *hz > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Lines, Write};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::sync::{Arc, Barrier};

    fn rid(s: &str) -> RunId {
        RunId::from(s)
    }

    fn lease_file(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join(".moltd.molt-update.lease")
    }

    /// What the file names, read under a shared lock so a write in progress
    /// is never seen half done.
    fn holder_in(path: &Path) -> Option<LeaseHolder> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => panic!("open {}: {e}", path.display()),
        };
        file.lock_shared().unwrap();
        match read_slot(&file, path).unwrap() {
            Slot::Held(holder) => Some(holder),
            Slot::Free => None,
        }
    }

    fn write_holder(path: &Path, holder: &LeaseHolder) {
        fs::write(path, serde_json::to_vec(holder).unwrap()).unwrap();
    }

    fn busy_run(err: LeaseError) -> (RunId, u32) {
        match err {
            LeaseError::Busy { run_id, owner } => (run_id, owner.pid),
            other => panic!("expected Busy, got {other:?}"),
        }
    }

    /// A live process that is not this one: `cat` waits on its stdin.
    struct Other(Child);

    impl Other {
        fn spawn() -> Other {
            let child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            Other(child)
        }

        fn owner(&self) -> RunOwner {
            process_owner(self.0.id()).unwrap()
        }

        /// Ends it and reaps it, so no process has its pid any more.
        fn exit(mut self) {
            drop(self.0.stdin.take());
            self.0.wait().unwrap();
        }
    }

    impl Drop for Other {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The pid of a process that has exited and been reaped.
    fn gone_pid() -> u32 {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn parse_stat_counts_fields_from_the_last_paren() {
        let middle: Vec<String> = (4..=21).map(|i| i.to_string()).collect();
        let line = format!(
            "4242 (a (weird) name) S) R {} 98765 23 24\n",
            middle.join(" ")
        );
        assert_eq!(
            parse_stat(&line),
            Some(ProcStat {
                state: b'R',
                start_ticks: 98765
            })
        );
        let zombie = format!("7 (x) Z {} 5", middle.join(" "));
        assert!(parse_stat(&zombie).unwrap().is_exited());
        assert_eq!(parse_stat("7 (x) S 1 2"), None, "too few fields");
        assert_eq!(parse_stat("no parens"), None);
    }

    #[test]
    fn start_time_names_a_process_and_a_gone_pid_has_none() {
        let me = std::process::id();
        let t = process_start_time(me).expect("this process has a start time");
        assert_eq!(process_start_time(me), Some(t), "stable");
        assert_eq!(process_start_time(gone_pid()), None);
    }

    #[test]
    fn current_owner_is_this_process_started_recently() {
        let owner = current_owner();
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(current_owner(), owner, "stable across calls");
        let now = unix_ms();
        // btime has one-second resolution.
        assert!(
            owner.started_at <= now + 1000,
            "{} > {now}",
            owner.started_at
        );
        assert!(
            owner.started_at > now - 3_600_000,
            "test binary started within the hour"
        );
    }

    #[test]
    fn acquire_records_the_holder_and_drop_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        let lease = Lease::acquire(&path, rid("run-1"), current_owner()).unwrap();

        let holder = holder_in(&path).unwrap();
        assert_eq!(holder.run_id, rid("run-1"));
        assert_eq!(holder.owner, current_owner());
        assert_eq!(holder.start_ticks, process_start_time(std::process::id()));
        assert_eq!(holder.boot_id.as_deref(), boot_id());
        assert_eq!(holder.owner_state(), OwnerState::Alive);
        let raw: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["runId"], "run-1");
        assert_eq!(raw["owner"]["pid"], std::process::id());
        let mode = crate::fsutil::testing::mode(&path);
        assert_eq!(mode, 0o600);

        drop(lease);
        assert_eq!(holder_in(&path), None);
        assert!(path.exists(), "the file is kept, empty");
    }

    #[test]
    fn second_acquire_is_busy_naming_the_running_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        let first = Lease::acquire(&path, rid("run-a"), current_owner()).unwrap();
        let err = Lease::acquire(&path, rid("run-b"), current_owner()).unwrap_err();
        assert!(err.to_string().contains("run-a"), "{err}");
        assert_eq!(busy_run(err), (rid("run-a"), std::process::id()));
        // The same run twice is refused too: two handles would double-release.
        let again = Lease::acquire(&path, rid("run-a"), current_owner()).unwrap_err();
        assert_eq!(busy_run(again).0, rid("run-a"));

        first.release().unwrap();
        let second = Lease::acquire(&path, rid("run-b"), current_owner()).unwrap();
        assert_eq!(holder_in(&path).unwrap().run_id, rid("run-b"));
        drop(second);
    }

    #[test]
    fn threads_racing_get_exactly_one_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(lease_file(&dir));
        for round in 0..20 {
            let n = 12;
            let barrier = Arc::new(Barrier::new(n));
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        let run = rid(&format!("run-{round}-{i}"));
                        Lease::acquire(&path, run, current_owner())
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: one winner");
            let winner = winners[0].holder.run_id.clone();
            assert_eq!(holder_in(&path).unwrap().run_id, winner);
            for result in results {
                match result {
                    Ok(lease) => drop(lease),
                    Err(err) => assert_eq!(busy_run(err).0, winner, "losers name the winner"),
                }
            }
            assert_eq!(holder_in(&path), None, "winner's drop freed it");
        }
    }

    #[test]
    fn a_dead_owners_lease_is_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        let other = Other::spawn();
        write_holder(
            &path,
            &LeaseHolder::identify(rid("run-old"), other.owner()).unwrap(),
        );
        let err = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap_err();
        assert_eq!(busy_run(err).0, rid("run-old"));

        other.exit();
        let stale = holder_in(&path).unwrap();
        assert_eq!(stale.owner_state(), OwnerState::Dead(DeadReason::NoProcess));
        let _ours = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap();
        assert_eq!(holder_in(&path).unwrap().run_id, rid("run-new"));
    }

    #[test]
    fn a_reused_pid_or_a_reboot_means_the_owner_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        // This process's pid is alive; a different start time means the
        // recorded owner was an earlier process with the same pid.
        let mut reused = LeaseHolder::identify(rid("run-old"), current_owner()).unwrap();
        reused.start_ticks = reused.start_ticks.map(|t| t + 12345);
        assert_eq!(
            reused.owner_state(),
            OwnerState::Dead(DeadReason::PidReused)
        );
        write_holder(&path, &reused);
        let lease = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap();
        assert_eq!(holder_in(&path).unwrap().run_id, rid("run-new"));
        drop(lease);

        let mut rebooted = LeaseHolder::identify(rid("run-old"), current_owner()).unwrap();
        rebooted.boot_id = Some("an-earlier-boot".to_owned());
        assert_eq!(
            rebooted.owner_state(),
            OwnerState::Dead(DeadReason::Rebooted)
        );
        write_holder(&path, &rebooted);
        drop(Lease::acquire(&path, rid("run-new"), current_owner()).unwrap());
    }

    #[test]
    fn an_owner_that_cannot_be_judged_keeps_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        // Live pid, no recorded start time: it might be the owner.
        let mut unknown = LeaseHolder::identify(rid("run-old"), current_owner()).unwrap();
        unknown.start_ticks = None;
        assert_eq!(unknown.owner_state(), OwnerState::Unknown);
        write_holder(&path, &unknown);
        let err = Lease::acquire(&path, rid("run-new"), current_owner()).unwrap_err();
        assert_eq!(busy_run(err).0, rid("run-old"));
    }

    #[test]
    fn unparseable_content_counts_as_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        fs::write(&path, b"{\"runId\": \"run-x\", \"own").unwrap();
        assert_eq!(holder_in(&path), None);
        let lease = Lease::acquire(&path, rid("run-1"), current_owner()).unwrap();
        assert_eq!(holder_in(&path).unwrap().run_id, rid("run-1"));
        drop(lease);
    }

    #[test]
    fn release_and_drop_leave_a_file_that_names_someone_else_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        let other = Other::spawn();
        let theirs = LeaseHolder::identify(rid("run-new"), other.owner()).unwrap();

        // Taken over under the handle (e.g. reclaimed by a process that
        // judged this owner dead, or rewritten by an operator).
        let lease = Lease::acquire(&path, rid("run-old"), current_owner()).unwrap();
        write_holder(&path, &theirs);
        let err = lease.release().unwrap_err();
        match &err {
            LeaseError::Lost { run_id, found, .. } => {
                assert_eq!(run_id, &rid("run-old"));
                assert_eq!(found.as_ref().unwrap().run_id, rid("run-new"));
            }
            other => panic!("expected Lost, got {other:?}"),
        }
        assert!(err.to_string().contains("run-new"), "{err}");
        assert_eq!(holder_in(&path).as_ref(), Some(&theirs), "untouched");

        fs::write(&path, b"").unwrap();
        let lease = Lease::acquire(&path, rid("run-old"), current_owner()).unwrap();
        write_holder(&path, &theirs);
        drop(lease);
        assert_eq!(holder_in(&path).as_ref(), Some(&theirs), "untouched");

        // A handle whose file was cleared under it cannot release it either.
        fs::write(&path, b"").unwrap();
        let lease = Lease::acquire(&path, rid("run-old"), current_owner()).unwrap();
        fs::write(&path, b"").unwrap();
        assert!(matches!(
            lease.release(),
            Err(LeaseError::Lost { found: None, .. })
        ));
    }

    #[test]
    fn a_lease_cannot_be_given_to_a_process_that_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        let pid = gone_pid();
        let nobody = RunOwner { pid, started_at: 0 };
        assert!(matches!(
            Lease::acquire(&path, rid("run-1"), nobody.clone()),
            Err(LeaseError::OwnerNotRunning { pid: p }) if p == pid
        ));
        assert_eq!(holder_in(&path), None, "nothing written");
    }

    #[test]
    fn lease_path_sits_beside_the_install_root() {
        assert_eq!(
            lease_path(Path::new("/nonexistent/lib/node_modules/moltd")),
            Path::new("/nonexistent/lib/node_modules/.moltd.molt-update.lease")
        );
        assert_eq!(
            lease_path(Path::new("/nonexistent/src/molt/")),
            Path::new("/nonexistent/src/.molt.molt-update.lease")
        );
        assert_eq!(lease_path(Path::new("/")), Path::new("/.molt-update.lease"));

        // Two spellings of one root share one lease.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("prefix");
        fs::create_dir_all(real.join("moltd")).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let canonical = fs::canonicalize(&real).unwrap();
        let expected = canonical.join(".moltd.molt-update.lease");
        assert_eq!(lease_path(&real.join("moltd")), expected);
        assert_eq!(lease_path(&link.join("moltd")), expected);
        fs::create_dir(real.join("moltd/sub")).unwrap();
        assert_eq!(lease_path(&real.join("moltd/sub/..")), expected);
        assert_eq!(
            lease_path(Path::new("/nonexistent/a/moltd/b/..")),
            Path::new("/nonexistent/a/.moltd.molt-update.lease")
        );
    }

    // --- Across processes: this test binary re-executed as a lease holder. ---

    const CHILD_ENV: &str = "MOLT_LEASE_TEST_CHILD";
    const CHILD_SAYS: &str = "lease-child: ";

    /// Not a test of its own: the body of the child processes the
    /// cross-process tests start (this binary re-executed with `CHILD_ENV`
    /// = `<lease path>\t<run id>\t<gate path>`). It prints `ready`, waits
    /// for a shared lock on the gate file (the parent holds it exclusively
    /// and lets every child go at once), races for the lease, reports, then
    /// exits on `crash` from stdin or when stdin closes.
    #[test]
    fn child_process_entry() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return;
        };
        let say = |msg: &str| {
            let mut out = io::stdout().lock();
            writeln!(out, "\n{CHILD_SAYS}{msg}").unwrap();
            out.flush().unwrap();
        };
        let mut parts = spec.split('\t');
        let (path, run, gate) = (
            Path::new(parts.next().unwrap()),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let gate = File::open(gate).unwrap();
        say("ready");
        gate.lock_shared().unwrap();
        let _lease = match Lease::acquire(path, rid(run), current_owner()) {
            Ok(lease) => {
                say(&format!("acquired {}", std::process::id()));
                Some(lease)
            }
            Err(LeaseError::Busy { run_id, owner }) => {
                say(&format!("busy {run_id} {}", owner.pid));
                None
            }
            Err(err) => {
                say(&format!("error {err}"));
                None
            }
        };
        if let Some(command) = io::stdin().lock().lines().next() {
            let command = command.unwrap();
            assert_eq!(command, "crash", "unknown command");
            // Exit without running destructors, as a crash would: the
            // lease keeps naming this (now dead) process.
            std::process::exit(0);
        }
        // stdin closed: a normal exit; dropping releases the lease.
    }

    struct ChildHolder {
        child: Child,
        stdin: Option<ChildStdin>,
        out: Lines<BufReader<ChildStdout>>,
        run: RunId,
    }

    impl ChildHolder {
        /// Starts a child parked on `gate` (see `child_process_entry`).
        fn spawn(path: &Path, run: &str, gate: &Path) -> ChildHolder {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "update::lease::tests::child_process_entry",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    CHILD_ENV,
                    format!("{}\t{run}\t{}", path.display(), gate.display()),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take();
            let out = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut holder = ChildHolder {
                child,
                stdin,
                out,
                run: rid(run),
            };
            assert_eq!(holder.next(), "ready");
            holder
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }

        fn send(&mut self, command: &str) {
            let stdin = self.stdin.as_mut().unwrap();
            writeln!(stdin, "{command}").unwrap();
            stdin.flush().unwrap();
        }

        /// The child's next message (the test harness prints lines too).
        fn next(&mut self) -> String {
            loop {
                let line = self.out.next().expect("child output ended").unwrap();
                if let Some((_, msg)) = line.split_once(CHILD_SAYS) {
                    return msg.to_owned();
                }
            }
        }

        /// Closes stdin (or sends `crash`) and waits for the exit.
        fn finish(mut self, crash: bool) {
            if crash {
                self.send("crash");
            }
            drop(self.stdin.take());
            let status = self.child.wait().unwrap();
            assert!(status.success(), "child failed: {status}");
        }
    }

    impl Drop for ChildHolder {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A file the parent locks exclusively; children wait for a shared lock.
    struct Gate {
        path: PathBuf,
        file: File,
    }

    impl Gate {
        fn closed(dir: &tempfile::TempDir) -> Gate {
            let path = dir.path().join("gate");
            let file = File::create(&path).unwrap();
            file.lock().unwrap();
            Gate { path, file }
        }

        fn open(self) {
            self.file.unlock().unwrap();
        }
    }

    /// Starts `n` children parked on one gate and opens it: they race.
    fn race(dir: &tempfile::TempDir, path: &Path, round: usize, n: usize) -> Vec<ChildHolder> {
        let gate = Gate::closed(dir);
        let children: Vec<ChildHolder> = (0..n)
            .map(|i| ChildHolder::spawn(path, &format!("run-{round}-{i}"), &gate.path))
            .collect();
        gate.open();
        children
    }

    #[test]
    fn processes_racing_get_exactly_one_lease_and_a_crashed_winner_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_file(&dir);
        for round in 0..3 {
            let mut children = race(&dir, &path, round, 6);
            let answers: Vec<String> = children.iter_mut().map(ChildHolder::next).collect();
            let winners: Vec<usize> = (0..children.len())
                .filter(|&i| answers[i].starts_with("acquired "))
                .collect();
            assert_eq!(winners.len(), 1, "{answers:?}");
            let winner = winners[0];
            let (win_run, win_pid) = (children[winner].run.clone(), children[winner].pid());
            assert_eq!(answers[winner], format!("acquired {win_pid}"));
            for (i, answer) in answers.iter().enumerate() {
                if i != winner {
                    assert_eq!(answer, &format!("busy {win_run} {win_pid}"));
                }
            }
            let holder = holder_in(&path).unwrap();
            assert_eq!(
                (holder.run_id, holder.owner.pid),
                (win_run.clone(), win_pid)
            );
            let err = Lease::acquire(&path, rid("run-parent"), current_owner()).unwrap_err();
            assert_eq!(busy_run(err), (win_run.clone(), win_pid));

            // The winner crashes holding the lease (a supervised restart
            // looks the same): the next acquire reclaims it.
            let crashed = children.remove(winner);
            crashed.finish(true);
            for child in children {
                child.finish(false);
            }
            assert_eq!(
                holder_in(&path).unwrap().owner_state(),
                OwnerState::Dead(DeadReason::NoProcess)
            );
            let next_run = rid(&format!("run-parent-{round}"));
            let taken = Lease::acquire(&path, next_run.clone(), current_owner()).unwrap();
            let holder = holder_in(&path).unwrap();
            assert_eq!((holder.run_id, holder.owner), (next_run, current_owner()));
            taken.release().unwrap();
            assert_eq!(holder_in(&path), None);
        }
    }
}
