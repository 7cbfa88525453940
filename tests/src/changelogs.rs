//! The `CHANGELOG.md` each test package ships, so a test can tell which
//! entries an update shows: every package lists the releases of
//! [`RELEASES`] up to its own version (and its own entry when it is not
//! one of them), under an `[Unreleased]` section that no update shows.

/// Releases the test changelogs know, newest first: `(version, date)`.
/// Between [`crate::updates::OLD`] and [`crate::updates::NEW`] lie a
/// minor release and a release candidate; before and after, releases an
/// update from `OLD` to `NEW` must not show.
pub const RELEASES: &[(&str, &str)] = &[
    ("3.0.0", "2026-12-03"),
    ("2.0.0", "2026-12-02"),
    ("2.0.0-rc.1", "2026-12-01"),
    ("1.1.0", "2026-11-15"),
    ("1.0.0", "2026-11-01"),
    ("0.9.0", "2026-10-01"),
];

/// The one bullet of `version`'s entry: unique, so a screen or a JSON
/// answer shows exactly whose entries it has.
pub fn entry_line(version: &str) -> String {
    format!("Entry of {version}.")
}

/// The changelog the package of `version` ships.
pub fn changelog_for(version: &str) -> String {
    let parsed = semver::Version::parse(version).ok();
    let mut text =
        String::from("# Changelog\n\n## [Unreleased]\n\n### Changed\n- Not released yet.\n\n");
    if !RELEASES.iter().any(|(v, _)| *v == version) {
        text.push_str(&entry(version, None));
    }
    for (release, date) in RELEASES {
        let older = match (&parsed, semver::Version::parse(release)) {
            (Some(own), Ok(release)) => release <= *own,
            _ => false,
        };
        if older {
            text.push_str(&entry(release, Some(date)));
        }
    }
    text
}

/// `2.0.0` calls out a protocol change, as a release that changes the
/// wire does.
fn entry(version: &str, date: Option<&str>) -> String {
    let heading = match date {
        Some(date) => format!("## [{version}] - {date}\n\n"),
        None => format!("## [{version}]\n\n"),
    };
    let protocol = if version == "2.0.0" {
        "### Protocol\n- A field a client sees.\n\n"
    } else {
        ""
    };
    format!(
        "{heading}{protocol}### Changed\n- {}\n\n",
        entry_line(version)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_lists_the_releases_up_to_its_own_version() {
        let log =
            molt_protocol::changelog::between(&changelog_for("2.0.0"), Some("1.0.0"), "2.0.0");
        let versions: Vec<&str> = log.entries.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(versions, ["2.0.0", "2.0.0-rc.1", "1.1.0"]);
        assert_eq!(log.problem, None);
        assert!(log.entries[0].protocol);
        // A version of its own gets its own entry.
        let log =
            molt_protocol::changelog::between(&changelog_for("2.5.0"), Some("2.0.0"), "2.5.0");
        assert_eq!(log.entries.len(), 1);
        assert_eq!(
            log.entries[0].text,
            format!("### Changed\n- {}", entry_line("2.5.0"))
        );
    }
}
