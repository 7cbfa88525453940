//! Shared fixtures for molt end-to-end tests.
