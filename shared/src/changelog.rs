//! `CHANGELOG.md` in Keep a Changelog style, and the part of it an update
//! brings: the entries strictly after the version that ran up to and
//! including the version installed, newest first.
//!
//! A release is a level-2 heading naming a semver version, `## [1.2.0] -
//! 2026-12-04` (brackets, a leading `v` and the date are optional); its
//! entry is everything below it up to the next level-2 heading. `##
//! [Unreleased]` and headings that name no version are not releases. An
//! entry with a `### Protocol` section calls out changes a client can see.
//!
//! The text comes from whatever tree an update installed, so nothing here
//! trusts it: control characters (a terminal's escape sequences) are
//! dropped, and what is kept is bounded ([`MAX_ENTRIES`],
//! [`MAX_ENTRY_CHARS`], [`MAX_TOTAL_CHARS`]), saying so in `truncated`.
//! A small parser rather than a crate: only the release headings matter,
//! and a hostile file must cost one pass and never fail the whole read.

use serde::{Deserialize, Serialize};

/// The file's name at the root of a package or checkout.
pub const FILE_NAME: &str = "CHANGELOG.md";
/// The most of the file moltd reads: the newest entries are at the top.
pub const MAX_READ_BYTES: u64 = 256 * 1024;
/// The most entries one run keeps.
pub const MAX_ENTRIES: usize = 32;
/// The most characters of one entry's text kept.
pub const MAX_ENTRY_CHARS: usize = 4000;
/// The most characters of all entries' text kept together.
pub const MAX_TOTAL_CHARS: usize = 16 * 1024;
/// The heading of the section that calls out protocol-visible changes.
pub const PROTOCOL_SECTION: &str = "### Protocol";

/// The changelog entries an update brought (`changelog` of a run record
/// and of `update.run`'s result).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changelog {
    /// Newest first.
    #[serde(default)]
    pub entries: Vec<ChangelogEntry>,
    /// Entries or text were left out to stay within the bounds.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// Why the entries may be incomplete or missing, for people: no
    /// changelog in the new tree, no entry for the new version, a file
    /// larger than [`MAX_READ_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One release's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangelogEntry {
    pub version: String,
    /// As written after the version (`2026-12-04`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The entry has a [`PROTOCOL_SECTION`]: changes a client can see.
    #[serde(default, skip_serializing_if = "is_false")]
    pub protocol: bool,
    /// The Markdown below the heading, trimmed.
    pub text: String,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// One release as written in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release<'a> {
    pub version: semver::Version,
    pub date: Option<&'a str>,
    pub body: &'a str,
}

/// Every release of `text`, in the file's order.
pub fn releases(text: &str) -> Vec<Release<'_>> {
    let mut found: Vec<Release<'_>> = Vec::new();
    // The release whose body runs until the next level-2 heading.
    let mut open: Option<(semver::Version, Option<&str>, usize)> = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if let Some(heading) = line.strip_prefix("## ") {
            if let Some((version, date, start)) = open.take() {
                found.push(Release {
                    version,
                    date,
                    body: &text[start..at],
                });
            }
            open = release_heading(heading).map(|(v, d)| (v, d, at + line.len()));
        }
        at += line.len();
    }
    if let Some((version, date, start)) = open {
        found.push(Release {
            version,
            date,
            body: &text[start..],
        });
    }
    found
}

/// `[1.2.0] - 2026-12-04`, `v1.2.0`, `1.2.0 (2026-12-04)`: the version
/// and what follows it; `None` when it names no semver version.
fn release_heading(heading: &str) -> Option<(semver::Version, Option<&str>)> {
    let heading = heading.trim();
    let (name, rest) = match heading.strip_prefix('[') {
        Some(inner) => inner.split_once(']')?,
        None => heading
            .split_once(char::is_whitespace)
            .unwrap_or((heading, "")),
    };
    let name = name.trim();
    let name = name.strip_prefix('v').unwrap_or(name);
    let version = semver::Version::parse(name).ok()?;
    let date = rest
        .trim()
        .trim_start_matches(['-', '–', '—'])
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    Some((version, (!date.is_empty()).then_some(date)))
}

/// The entries of `text` strictly after `from` up to and including `to`,
/// newest first, bounded. Without a `from` (the version that ran is
/// unknown) only `to`'s own entry.
pub fn between(text: &str, from: Option<&str>, to: &str) -> Changelog {
    let mut log = Changelog::default();
    let Ok(to_version) = semver::Version::parse(to) else {
        log.problem = Some(format!("the new version {to:?} is not a semver version"));
        return log;
    };
    let from = from.and_then(|f| semver::Version::parse(f).ok());
    let in_range = |v: &semver::Version| match &from {
        Some(from) => v > from && *v <= to_version,
        None => *v == to_version,
    };
    let mut picked: Vec<Release<'_>> = releases(text)
        .into_iter()
        .filter(|r| in_range(&r.version))
        .collect();
    // Newest first whatever the file's order; the first of a repeated
    // version counts.
    picked.sort_by(|a, b| b.version.cmp(&a.version));
    picked.dedup_by(|b, a| a.version == b.version);
    if picked.first().is_none_or(|r| r.version != to_version) {
        log.problem = Some(format!("{FILE_NAME} has no entry for {to}"));
    }
    let mut total = 0;
    for release in picked {
        if log.entries.len() == MAX_ENTRIES || total >= MAX_TOTAL_CHARS {
            log.truncated = true;
            break;
        }
        let (body, cut) = clean(release.body, MAX_ENTRY_CHARS.min(MAX_TOTAL_CHARS - total));
        log.truncated |= cut;
        total += body.chars().count();
        log.entries.push(ChangelogEntry {
            version: release.version.to_string(),
            date: release.date.map(|d| clean(d, 64).0),
            protocol: release
                .body
                .lines()
                .any(|l| l.trim_end().eq_ignore_ascii_case(PROTOCOL_SECTION)),
            text: body,
        });
    }
    log
}

/// `text` trimmed, without control characters (tabs become a space,
/// line ends stay) and without link definitions (`[1.0.0]: https://…`),
/// at most `max` characters; whether it was cut.
fn clean(text: &str, max: usize) -> (String, bool) {
    let mut out = String::new();
    let mut chars = 0;
    for line in text.lines() {
        if is_link_definition(line) {
            continue;
        }
        let line: String = line
            .chars()
            .filter_map(|c| match c {
                '\t' => Some(' '),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect();
        let line = line.trim_end();
        let need = line.chars().count() + usize::from(!out.is_empty());
        if chars + need > max {
            let room = max.saturating_sub(chars + usize::from(!out.is_empty()) + 1);
            if room > 0 {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.extend(line.chars().take(room));
            }
            out.push('…');
            return (out.trim().to_owned(), true);
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
        chars += need;
    }
    (out.trim().to_owned(), false)
}

/// A Markdown link reference definition, `[label]: target`.
fn is_link_definition(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("]:"))
        .is_some_and(|(label, _)| !label.is_empty() && !label.contains(']'))
}

#[cfg(test)]
mod tests;
