//! Fault injection for the crash tests, compiled only with the cargo
//! feature `fault-injection` (never in a release): with
//! `MOLT_FAULT_KILL_SWAP_OP=N` in its environment, moltd SIGKILLs itself
//! right before the swap's N-th mutating operation (N one past the last:
//! after the last operation, before the journal is cleared). A real
//! `kill -9` at a chosen point, not a simulated error.

use std::io;

/// The variable that names the operation to die before.
pub const KILL_SWAP_OP: &str = "MOLT_FAULT_KILL_SWAP_OP";

/// The hook [`super::swap_with_faults`] calls before each operation.
pub(super) fn kill_before_op() -> impl FnMut(&str) -> io::Result<()> {
    let target: Option<usize> = std::env::var(KILL_SWAP_OP)
        .ok()
        .and_then(|n| n.parse().ok());
    let mut seen = 0;
    move |step| {
        seen += 1;
        if Some(seen) == target {
            eprintln!("moltd: fault injection: SIGKILL before swap operation {seen} ({step})");
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        }
        Ok(())
    }
}
