use proptest::prelude::*;

use super::*;

const LOG: &str = "\
# Changelog

All notable changes are documented here.

## [Unreleased]

### Added
- Something not released yet.

## [2.0.0] - 2026-12-04

### Protocol
- `update.run` answers carry `changelog`.

### Added
- The Update screen shows what changed.

## [2.0.0-rc.1] - 2026-11-30

### Fixed
- A release candidate's fix.

## v1.1.0 (2026-11-01)

### Changed
- Faster handoffs.

## [1.0.0] - 2026-10-01

### Added
- First release.

[2.0.0]: https://example.invalid/compare/v1.1.0...v2.0.0
[1.0.0]: https://example.invalid/releases/v1.0.0
";

fn versions(log: &Changelog) -> Vec<&str> {
    log.entries.iter().map(|e| e.version.as_str()).collect()
}

#[test]
fn releases_are_the_version_headings_in_file_order() {
    let found: Vec<(String, Option<&str>)> = releases(LOG)
        .into_iter()
        .map(|r| (r.version.to_string(), r.date))
        .collect();
    assert_eq!(
        found,
        [
            ("2.0.0".to_owned(), Some("2026-12-04")),
            ("2.0.0-rc.1".to_owned(), Some("2026-11-30")),
            ("1.1.0".to_owned(), Some("2026-11-01")),
            ("1.0.0".to_owned(), Some("2026-10-01")),
        ]
    );
}

#[test]
fn between_picks_strictly_after_the_old_up_to_and_including_the_new() {
    let log = between(LOG, Some("1.0.0"), "2.0.0");
    assert_eq!(versions(&log), ["2.0.0", "2.0.0-rc.1", "1.1.0"]);
    assert_eq!((log.truncated, log.problem.as_deref()), (false, None));
    let newest = &log.entries[0];
    assert!(newest.protocol);
    assert_eq!(newest.date.as_deref(), Some("2026-12-04"));
    assert_eq!(
        newest.text,
        "### Protocol\n- `update.run` answers carry `changelog`.\n\n\
         ### Added\n- The Update screen shows what changed."
    );
    assert!(!log.entries[2].protocol);
    // The last entry's link definitions are not its text.
    assert_eq!(
        between(LOG, Some("0.9.0"), "1.0.0").entries[0].text,
        "### Added\n- First release."
    );
}

#[test]
fn an_unknown_old_version_gives_the_new_entry_only() {
    assert_eq!(versions(&between(LOG, None, "1.1.0")), ["1.1.0"]);
    assert_eq!(
        versions(&between(LOG, Some("not-a-version"), "1.1.0")),
        ["1.1.0"]
    );
}

#[test]
fn a_downgrade_or_the_same_version_brings_nothing() {
    let down = between(LOG, Some("2.0.0"), "1.0.0");
    assert_eq!(versions(&down), Vec::<&str>::new());
    let same = between(LOG, Some("2.0.0"), "2.0.0");
    assert_eq!(versions(&same), Vec::<&str>::new());
}

#[test]
fn a_missing_entry_or_version_is_named() {
    let log = between(LOG, Some("1.0.0"), "3.0.0");
    assert_eq!(versions(&log), ["2.0.0", "2.0.0-rc.1", "1.1.0"]);
    assert_eq!(
        log.problem.as_deref(),
        Some("CHANGELOG.md has no entry for 3.0.0")
    );
    let bad = between(LOG, Some("1.0.0"), "latest");
    assert!(bad.entries.is_empty());
    assert_eq!(
        bad.problem.as_deref(),
        Some("the new version \"latest\" is not a semver version")
    );
}

#[test]
fn out_of_order_and_repeated_headings_come_out_newest_first_once() {
    let text = "## [1.1.0]\n- b\n## [1.2.0]\n- c\n## [1.1.0]\n- again\n";
    let log = between(text, Some("1.0.0"), "1.2.0");
    assert_eq!(versions(&log), ["1.2.0", "1.1.0"]);
    assert_eq!(log.entries[1].text, "- b");
}

#[test]
fn escape_sequences_and_control_characters_are_dropped() {
    let text = "## [1.0.1]\n- \u{1b}[2Jcleared\u{7}\tscreen\r\n";
    let log = between(text, Some("1.0.0"), "1.0.1");
    assert_eq!(log.entries[0].text, "- [2Jcleared screen");
}

#[test]
fn a_long_entry_is_cut_and_says_so() {
    let text = format!("## [1.0.1]\n{}\n", "- word\n".repeat(MAX_ENTRY_CHARS));
    let log = between(&text, Some("1.0.0"), "1.0.1");
    assert!(log.truncated);
    let kept = &log.entries[0].text;
    assert!(kept.chars().count() <= MAX_ENTRY_CHARS, "{}", kept.len());
    assert!(kept.ends_with('…'));
}

#[test]
fn many_entries_stop_at_the_bounds() {
    let text: String = (1..=200)
        .rev()
        .map(|minor| format!("## [1.{minor}.0]\n- {}\n", "x".repeat(300)))
        .collect();
    let log = between(&text, Some("1.0.0"), "1.200.0");
    assert!(log.truncated);
    assert!(log.entries.len() <= MAX_ENTRIES);
    assert_eq!(log.entries[0].version, "1.200.0");
    let total: usize = log.entries.iter().map(|e| e.text.chars().count()).sum();
    assert!(total <= MAX_TOTAL_CHARS + MAX_ENTRIES, "{total}");
}

#[test]
fn the_wire_shape_is_camel_case_and_drops_defaults() {
    let log = between(LOG, Some("1.1.0"), "2.0.0");
    let wire = serde_json::to_value(&log).unwrap();
    assert_eq!(wire["entries"][0]["protocol"], true);
    assert_eq!(wire["entries"][1].get("protocol"), None);
    assert_eq!(wire.get("truncated"), None);
    let back: Changelog = serde_json::from_value(wire).unwrap();
    assert_eq!(back, log);
    // An older or newer peer's shape still reads.
    let sparse: Changelog =
        serde_json::from_str(r#"{"entries":[{"version":"1.0.0","text":"","extra":1}]}"#).unwrap();
    assert_eq!(sparse.entries[0].version, "1.0.0");
}

proptest! {
    /// Whatever a tree ships, the read ends, stays in bounds, keeps no
    /// control character, and every entry is in range, newest first.
    #[test]
    fn hostile_text_stays_bounded_and_in_range(
        lines in prop::collection::vec(
            prop_oneof![
                "## \\[?v?[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-rc\\.[0-9])?\\]? ?-? ?[0-9-]{0,10}",
                "## .{0,20}",
                "### Protocol",
                "\\PC{0,80}",
                "[\\x00-\\x1f\\x7f]{0,5}",
                "\\[[a-z0-9.]{1,5}\\]: .{0,10}",
            ],
            0..200,
        ),
        from in "[0-9]\\.[0-9]\\.[0-9]",
        to in "(0|[1-9][0-9]?)\\.(0|[1-9][0-9]?)\\.(0|[1-9][0-9]?)",
    ) {
        let text = lines.join("\n");
        let log = between(&text, Some(&from), &to);
        prop_assert!(log.entries.len() <= MAX_ENTRIES);
        let total: usize = log.entries.iter().map(|e| e.text.chars().count()).sum();
        prop_assert!(total <= MAX_TOTAL_CHARS + MAX_ENTRIES);
        let (from, to) = (
            semver::Version::parse(&from).unwrap(),
            semver::Version::parse(&to).unwrap(),
        );
        let mut last: Option<semver::Version> = None;
        for entry in &log.entries {
            prop_assert!(entry.text.chars().count() <= MAX_ENTRY_CHARS);
            prop_assert!(!entry.text.chars().any(|c| c.is_control() && c != '\n'));
            let v = semver::Version::parse(&entry.version).unwrap();
            prop_assert!(v > from && v <= to);
            if let Some(last) = &last {
                prop_assert!(v < *last);
            }
            last = Some(v);
        }
    }
}
