//! The auto-updater (docs/operations.md): when to check the registry, when to apply
//! what it found, and the `OPENCLAW_NO_AUTO_UPDATE` kill switch.
//!
//! [`policy::evaluate`] is a pure function of settings, install mode, kill
//! switch, the remembered [`state::CheckState`] and the time; the
//! [`driver::AutoUpdater`] task sleeps until the plan's next time and calls
//! the check and apply it is given. `status.auto` is the same evaluation,
//! so what status says and what the driver does cannot disagree.

/// The task that wakes at the policy's next time.
pub mod driver;
/// `OPENCLAW_NO_AUTO_UPDATE`: where it is set, and setting it live.
pub mod kill_switch;
/// The pure decision: apply, wait, blocked or skip, and the next times.
pub mod policy;
/// What is remembered in `update-check.json`.
pub mod state;
/// Loading and saving `update-check.json`.
pub mod store;

pub use driver::{ApplyOutcome, AutoUpdater, Hooks, Live, Shared};
pub use kill_switch::KillSwitch;
pub use policy::{Decision, Plan, SkipReason};
pub use state::CheckState;
