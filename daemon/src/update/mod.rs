//! The update engine (SPEC §6).

/// How moltd was installed: the live package root and stable entrypoint.
pub mod layout;
/// A private stage, the manager's install into it, its verification.
pub mod stage;
/// The all-or-nothing swap of a stage into the live install, and rollback.
pub mod swap;
