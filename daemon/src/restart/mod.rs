//! Restarts: one scheduler owns every restart request (update, config,
//! operator, SIGUSR1); strategies carry them out without closing the port.

pub mod engine;
pub mod exec;
pub mod inherit;
pub mod relay;
pub mod respawn;
pub mod scheduler;
