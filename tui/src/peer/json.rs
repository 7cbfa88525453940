//! Lenient readers: a value of the wrong type is absent, never an error.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The value at a JSON pointer, unless absent or null.
pub fn at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer).filter(|v| !v.is_null())
}

/// A non-empty string.
pub fn string(value: &Value, pointer: &str) -> Option<String> {
    at(value, pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub fn u64_at(value: &Value, pointer: &str) -> Option<u64> {
    let v = at(value, pointer)?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}

pub fn u32_at(value: &Value, pointer: &str) -> Option<u32> {
    u64_at(value, pointer).and_then(|n| u32::try_from(n).ok())
}

pub fn i32_at(value: &Value, pointer: &str) -> Option<i32> {
    at(value, pointer)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
}

pub fn bool_at(value: &Value, pointer: &str) -> Option<bool> {
    at(value, pointer).and_then(Value::as_bool)
}

/// A typed sub-object; one that does not decode is absent.
pub fn typed<T: DeserializeOwned>(value: &Value, pointer: &str) -> Option<T> {
    at(value, pointer).and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// The value as JSON, shortened for a message.
pub fn short(value: &Value) -> String {
    const MAX: usize = 80;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
