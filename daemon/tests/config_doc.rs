//! docs/operations.md's config table against `Settings`: it names every
//! key moltd reads; a documented default written out explicitly reads the
//! same as no key at all; and the accepted values are accepted at their
//! bounds and refused just past them. The Limits table's numbers are the
//! constants that enforce them. A key, default or limit changed without
//! the doc fails here.

use std::collections::BTreeSet;

use molt_daemon::config::Settings;
use molt_e2e::doc;
use serde_json::{Value, json};

const DOC: &str = include_str!("../../docs/operations.md");

fn table() -> doc::Table {
    doc::table_with(
        DOC,
        "Config",
        &["key", "default", "accepted", "used by this version"],
    )
}

/// `{"a": {"b": value}}` for `a.b`, over a base that keeps the rest valid.
fn with(key: &str, value: Value) -> Value {
    let mut root = json!({});
    let mut cur = &mut root;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(part.to_string())
            .or_insert(json!({}));
    }
    cur[parts[parts.len() - 1]] = value;
    if key == "gateway.bind" {
        root["gateway"]["customBindHost"] = json!("127.0.0.2");
    }
    root
}

fn accepts(key: &str, value: Value) -> bool {
    Settings::from_value(&with(key, value)).is_ok()
}

#[track_caller]
fn assert_accepts(key: &str, value: Value) {
    assert!(
        accepts(key, value.clone()),
        "{key}: {value} should be accepted"
    );
}

#[track_caller]
fn assert_refuses(key: &str, value: Value) {
    assert!(
        !accepts(key, value.clone()),
        "{key}: {value} should be refused"
    );
}

#[test]
fn the_config_table_names_every_key_moltd_reads() {
    let documented: BTreeSet<String> = table()
        .column("key")
        .iter()
        .flat_map(|cell| doc::ticked(cell))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        documented,
        Settings::keys(),
        "docs/operations.md, \"Config\""
    );
}

#[test]
fn each_documented_default_is_the_default() {
    let table = table();
    let mut checked = 0;
    for row in &table.rows {
        let [default] = doc::ticked(&row[1])[..] else {
            continue; // none, generated, a path
        };
        let Ok(value) = serde_json::from_str::<Value>(default) else {
            continue;
        };
        for key in doc::ticked(&row[0]) {
            let explicit = Settings::from_value(&with(key, value.clone()))
                .unwrap_or_else(|e| panic!("{key}: the default {value} is refused: {e}"));
            let mut implicit = Settings::default();
            if key == "gateway.bind" {
                // The base names a custom host, which loopback ignores.
                implicit = Settings::from_value(&with(key, json!("loopback"))).unwrap();
            }
            assert_eq!(explicit, implicit, "{key}: documented default {value}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} defaults read from the table");
}

/// The first `integer A..=B` in the cell.
fn int_range(cell: &str) -> Option<(u64, u64)> {
    let rest = cell.strip_prefix("integer ")?;
    let range = rest.split([':', ' ']).next()?;
    let (low, high) = range.split_once("..=")?;
    Some((low.parse().ok()?, high.parse().ok()?))
}

#[test]
fn the_accepted_values_are_accepted_at_their_bounds_and_no_further() {
    let table = table();
    let mut checked = 0;
    for row in &table.rows {
        let cell = row[2].as_str();
        for key in doc::ticked(&row[0]) {
            // A cell that starts with a quoted choice lists the choices.
            let choices = if cell.starts_with("`\"") { cell } else { "" };
            let quoted: Vec<Value> = doc::ticked(choices)
                .into_iter()
                .take_while(|t| t.starts_with('"'))
                .map(|t| serde_json::from_str(t).unwrap())
                .collect();
            if let Some((low, high)) = int_range(cell) {
                assert_accepts(key, json!(low));
                assert_accepts(key, json!(high));
                if low > 0 {
                    assert_refuses(key, json!(low - 1));
                }
                assert_refuses(key, json!(high + 1));
                assert_refuses(key, json!("1"));
            } else if cell.starts_with("integer ≥ 0") {
                assert_accepts(key, json!(0));
                assert_accepts(key, json!(u64::MAX));
                assert_refuses(key, json!(-1));
                assert_refuses(key, json!(0.5));
            } else if cell.starts_with("number ≥ 0") {
                assert_accepts(key, json!(0));
                assert_accepts(key, json!(0.5));
                assert_refuses(key, json!(-0.5));
            } else if cell.starts_with("number > 0") {
                assert_accepts(key, json!(0.5));
                assert_refuses(key, json!(0));
            } else if cell.starts_with("`true`/`false`") {
                assert_accepts(key, json!(true));
                assert_accepts(key, json!(false));
                assert_refuses(key, json!("yes"));
            } else if !quoted.is_empty() {
                for value in &quoted {
                    assert_accepts(key, value.clone());
                }
                assert_refuses(key, json!("something-else"));
            } else {
                continue; // described in words: tokens, origins, names, paths
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} rows read");
}

/// The leading numbers of a cell: `256 characters (a dist-tag: 64)` is
/// `[256, 64]`; `64 KiB` and `25 MiB` count bytes.
fn numbers(cell: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let words: Vec<&str> = cell.split([' ', '(', ')', ',']).collect();
    for (i, word) in words.iter().enumerate() {
        let Ok(n) = word.replace('\u{a0}', "").parse::<usize>() else {
            continue;
        };
        let unit = match words.get(i + 1) {
            Some(&"KiB") => 1024,
            Some(&"MiB") => 1024 * 1024,
            _ => 1,
        };
        found.push(n * unit);
    }
    found
}

#[test]
fn the_limits_table_is_the_constants_that_enforce_it() {
    use molt_daemon::config::limits::{MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH};
    use molt_protocol::handshake::{MAX_PAYLOAD, PRE_AUTH_MAX_PAYLOAD};
    use molt_protocol::limits::*;
    let expected: &[(&str, &[usize])] = &[
        ("frame before `hello-ok`", &[PRE_AUTH_MAX_PAYLOAD]),
        ("frame after `hello-ok`", &[MAX_PAYLOAD]),
        (
            "connections at once",
            &[molt_daemon::server::MAX_CONNECTIONS],
        ),
        (
            "requests in flight, one connection",
            &[molt_daemon::session::MAX_IN_FLIGHT as usize],
        ),
        ("`gateway.restart.request` `reason`", &[MAX_RESTART_REASON]),
        ("`update.run` `note`", &[MAX_UPDATE_NOTE]),
        ("`update.run` `tag`", &[MAX_TAG, MAX_DIST_TAG]),
        ("`update.run` `sessionKey`", &[MAX_SESSION_KEY]),
        ("`gateway.hold.acquire` `reason`", &[MAX_HOLD_REASON]),
        ("live holds", &[MAX_HOLDS]),
        ("`runId`, `holdId` a client asks about", &[MAX_ID]),
        (
            "`config.patch` `raw`, `openclaw.json`",
            &[MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH],
        ),
    ];
    let table = doc::table_with(
        DOC,
        "Limits",
        &["limit", "default", "config key", "past it"],
    );
    for (limit, values) in expected {
        let row = table
            .rows
            .iter()
            .find(|row| row[0] == *limit)
            .unwrap_or_else(|| panic!("no row {limit:?} in docs/operations.md, \"Limits\""));
        assert_eq!(numbers(&row[1]), *values, "{limit}: {}", row[1]);
    }
}
