//! The install-root lease: one update run per install root at a time, across
//! threads, processes and the restart an update causes (docs/updating.md).
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
//! records the owner's kernel start time ([`super::owner::process_start_time`], clock ticks
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

use molt_protocol::ids::RunId;
use molt_protocol::update::RunOwner;
use serde::{Deserialize, Serialize};

use super::owner::{Probe, boot_id, probe};
#[cfg(test)]
use super::owner::{current_owner, process_owner, process_start_time};
use crate::clock::unix_ms;
use crate::fsutil::{path_error, read_all_bounded};

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
    /// [`super::owner::current_owner`]). A lease whose owner is dead is reclaimed (logged);
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
    let bytes = match read_all_bounded(file, path, MAX_LEASE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!(lease = %path.display(), "{e}; treating it as free");
            return Ok(Slot::Free);
        }
        Err(e) => return Err(e.into()),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
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
    // Too large to keep is garbage anyway (see `read_slot`).
    let old = read_all_bounded(file, path, MAX_LEASE_BYTES).unwrap_or_default();
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

#[cfg(test)]
mod tests;
