//! The new tree's `CHANGELOG.md`, read once the update is in place (the
//! package swapped in, the checkout built), before the restart: operators
//! decide on updates from it, so the run record, `update.run`'s answer and
//! `update.status` carry the entries between the version that ran and the
//! one installed. A missing, huge or garbled file never fails an update:
//! it reads as a bounded result that says what was wrong.

use std::io::Read;
use std::path::Path;

use molt_protocol::changelog::{self, Changelog, FILE_NAME, MAX_READ_BYTES};

/// The entries of `<root>/CHANGELOG.md` strictly after `from` up to and
/// including `to`. Reads at most [`MAX_READ_BYTES`]. Blocking.
pub fn read(root: &Path, from: Option<&str>, to: &str) -> Changelog {
    let path = root.join(FILE_NAME);
    let (bytes, whole) = match read_head(&path) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Changelog {
                problem: Some(format!("the new version ships no {FILE_NAME}")),
                ..Changelog::default()
            };
        }
        Err(e) => {
            return Changelog {
                problem: Some(format!("cannot read {}: {e}", path.display())),
                ..Changelog::default()
            };
        }
    };
    let mut log = changelog::between(&String::from_utf8_lossy(&bytes), from, to);
    if !whole {
        // The newest entries come first, so they are in the part read; an
        // entry cut at the bound is cut short, not lost.
        log.truncated = true;
        log.problem = Some(format!(
            "{FILE_NAME} is larger than {} KiB; only its beginning was read",
            MAX_READ_BYTES / 1024
        ));
    }
    log
}

/// The first [`MAX_READ_BYTES`] of `path`, and whether that is all of it.
fn read_head(path: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES + 1).read_to_end(&mut bytes)?;
    let whole = bytes.len() as u64 <= MAX_READ_BYTES;
    bytes.truncate(MAX_READ_BYTES as usize);
    Ok((bytes, whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entries_between_the_versions_come_from_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "## [Unreleased]\n- next\n## [1.2.0]\n- two\n## [1.1.0]\n- one\n## [1.0.0]\n- zero\n",
        )
        .unwrap();
        let log = read(dir.path(), Some("1.0.0"), "1.2.0");
        let got: Vec<(&str, &str)> = log
            .entries
            .iter()
            .map(|e| (e.version.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(got, [("1.2.0", "- two"), ("1.1.0", "- one")]);
        assert_eq!((log.truncated, log.problem), (false, None));
    }

    #[test]
    fn no_changelog_is_said_and_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = read(dir.path(), Some("1.0.0"), "1.2.0");
        assert!(log.entries.is_empty());
        assert_eq!(
            log.problem.as_deref(),
            Some("the new version ships no CHANGELOG.md")
        );
        std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
        let log = read(dir.path(), Some("1.0.0"), "1.2.0");
        assert!(
            log.problem
                .as_deref()
                .is_some_and(|p| p.contains("CHANGELOG.md") && p.contains("not a regular file")),
            "{log:?}"
        );
    }

    #[test]
    fn a_huge_file_is_read_to_the_bound_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("## [1.1.0] - 2026-12-04\n- the newest\n");
        // Garbage, invalid UTF-8 included, far past the bound.
        let junk = b"\xff\xfe not utf-8 \x1b[31m ## [0.0.1]\n".repeat(40_000);
        text.push_str("## [1.0.1]\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&junk);
        assert!(bytes.len() as u64 > 4 * MAX_READ_BYTES);
        std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
        let log = read(dir.path(), Some("1.0.0"), "1.1.0");
        assert_eq!(log.entries[0].version, "1.1.0");
        assert_eq!(log.entries[0].text, "- the newest");
        let cut = &log.entries[1];
        assert_eq!(cut.version, "1.0.1");
        assert!(cut.text.chars().count() <= changelog::MAX_ENTRY_CHARS);
        assert!(!cut.text.contains('\u{1b}'));
        assert!(log.truncated);
        assert_eq!(
            log.problem.as_deref(),
            Some("CHANGELOG.md is larger than 256 KiB; only its beginning was read")
        );
    }
}
