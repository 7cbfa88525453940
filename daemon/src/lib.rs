//! molt-daemon
