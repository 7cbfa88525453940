//! The update engine: target resolution, steps, staging and swap, runs.

pub mod steps;
pub mod target;
