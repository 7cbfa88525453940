//! molt-protocol
