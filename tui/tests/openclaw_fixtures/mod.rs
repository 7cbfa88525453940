//! Payloads captured from real OpenClaw gateways (`fixtures/openclaw/`).
#![allow(dead_code)]

use std::path::Path;

use molt_console::peer::Hello;
use serde_json::Value;

/// `fixtures/openclaw/<name>.json`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openclaw")
        .join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn hello(name: &str) -> Hello {
    Hello::from_payload(fixture(name)).unwrap()
}
