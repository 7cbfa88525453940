//! Restarts: one scheduler owns every restart request (update, config, operator, SIGUSR1).
pub mod scheduler;
