//! Who owns a run: a pid plus the kernel's start time of that process
//! and the boot id, read from `/proc`. A pid alone is ambiguous once pids
//! are reused; with its start ticks and the boot id it names exactly one
//! process. The lease and the resolution of orphaned runs at start both
//! judge owners this way.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use molt_protocol::update::RunOwner;

use crate::clock::unix_ms;

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
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    pub state: u8,
    /// Field 22.
    pub start_ticks: u64,
}

impl ProcStat {
    pub fn is_exited(&self) -> bool {
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

pub(crate) enum Probe {
    Running(ProcStat),
    Gone,
    Unknown,
}

pub(crate) fn probe(pid: u32) -> Probe {
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
pub(crate) fn boot_id() -> Option<&'static str> {
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
    Some(btime * 1000 + ticks * 1000 / crate::clock::ticks_per_sec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid of a process that has exited and been reaped.
    fn gone_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
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
}
