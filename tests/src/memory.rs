//! Resident memory of a process, from `/proc/<pid>/status`: tests assert
//! bounds with it, benchmarks report it.

use anyhow::{Context, Result};

/// VmRSS and VmHWM of `pid`.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Memory::parse(&status).with_context(|| format!("no VmRSS/VmHWM in {path}"))
}

/// Resident memory in KiB: now (`VmRSS`) and at its peak (`VmHWM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        };
        Some(Self {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    pub fn rss_mib(self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn hwm_mib(self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_hwm_from_proc_status() {
        let status =
            "Name:\tmoltd\nVmPeak:\t  10000 kB\nVmHWM:\t    6144 kB\nVmRSS:\t    5120 kB\n";
        let m = Memory::parse(status).unwrap();
        assert_eq!((m.rss_kib, m.hwm_kib), (5120, 6144));
        assert_eq!(m.rss_mib(), 5.0);
        assert_eq!(Memory::parse("Name:\tx\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.hwm_kib >= m.rss_kib && m.rss_kib > 0, "{m:?}");
    }
}
