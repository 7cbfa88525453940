//! molt-console
