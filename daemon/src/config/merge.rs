//! RFC 7396 JSON merge patch and the list of paths a change touched.

use serde_json::{Map, Value};

/// Applies `patch` to `target` per RFC 7396: objects merge recursively,
/// `null` deletes a key, anything else replaces. Key order is preserved
/// (new keys go last) so an operator's file keeps its layout.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.shift_remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Dotted paths of the leaves that differ between `old` and `new`, sorted.
/// A key added or removed with an object value reports that object's leaves;
/// a key whose type changes to or from an object reports the key itself.
/// Arrays are leaves.
pub fn changed_paths(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(Some(old), Some(new), "", &mut out);
    out.sort();
    out.dedup();
    out
}

fn diff(old: Option<&Value>, new: Option<&Value>, prefix: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let added = b.keys().filter(|k| !a.contains_key(*k));
            for key in a.keys().chain(added) {
                diff(a.get(key), b.get(key), &join(prefix, key), out);
            }
        }
        (Some(Value::Object(obj)), None) | (None, Some(Value::Object(obj))) if !obj.is_empty() => {
            for (key, value) in obj {
                diff(Some(value), None, &join(prefix, key), out);
            }
        }
        (a, b) if a != b => out.push(prefix.to_owned()),
        _ => {}
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(target: Value, patch: Value) -> Value {
        let mut t = target;
        merge_patch(&mut t, &patch);
        t
    }

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn rfc7396_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(
                merged(target.clone(), patch.clone()),
                want,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn merge_keeps_key_order() {
        let out = merged(json!({"z":1,"a":2,"m":3}), json!({"a":null,"b":4,"z":5}));
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "m", "b"]);
    }

    #[test]
    fn changed_paths_reports_sorted_dotted_leaves() {
        let old = json!({
            "gateway": {"port": 1, "bind": "lan", "auth": {"mode": "token"}},
            "keep": {"x": [1, 2]},
            "gone": {"a": 1, "b": {"c": 2}},
            "shape": 5,
        });
        let new = json!({
            "gateway": {"port": 2, "bind": "lan", "auth": {"mode": "none"}},
            "keep": {"x": [1, 3]},
            "added": {"p": {"q": true}},
            "shape": {"now": "object"},
            "empty": {},
        });
        assert_eq!(
            changed_paths(&old, &new),
            [
                "added.p.q",
                "empty",
                "gateway.auth.mode",
                "gateway.port",
                "gone.a",
                "gone.b.c",
                "keep.x",
                "shape",
            ]
        );
        assert!(changed_paths(&old, &old).is_empty());
    }
}
