//! The `tag` of an update run: an exact version or a dist-tag, checked the
//! same way by `molt` before it sends one and by `moltd` before it hands
//! one to a package manager or git.

use semver::Version;

pub use crate::limits::MAX_DIST_TAG;
// Longest tag input looked at; anything longer is rejected outright.
use crate::limits::MAX_TAG as MAX_INPUT;

/// What the operator asked for with `tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagSpec {
    /// An exact version (downgrades allowed).
    Version(Version),
    /// A dist-tag such as `latest`, `beta` or `next`.
    DistTag(String),
}

impl std::fmt::Display for TagSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagSpec::Version(v) => v.fmt(f),
            TagSpec::DistTag(t) => f.write_str(t),
        }
    }
}

/// Why a `tag` was refused: the input (quoted, shortened) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid version or dist-tag {input}: {reason}")]
pub struct TagError {
    /// The input, quoted and shortened.
    pub input: String,
    pub reason: String,
}

/// `"input"` with escapes, cut to 80 characters.
fn quote_input(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// Parses the operator's `tag`: an exact semver version (a leading `v` is
/// allowed: `v1.2.3`) or a dist-tag by npm's rules (`[a-z0-9][a-z0-9._-]*`,
/// at most [`MAX_DIST_TAG`] characters, not something npm would read as a
/// version range such as `1`, `1.2` or `1.x`). Rejects anything starting
/// with `-` or holding whitespace, `/`, `:` or shell metacharacters.
pub fn parse_tag(s: &str) -> Result<TagSpec, TagError> {
    let invalid = |reason: &str| TagError {
        input: quote_input(s),
        reason: reason.to_owned(),
    };
    if s.is_empty() {
        return Err(invalid("it is empty"));
    }
    if s.len() > MAX_INPUT {
        return Err(invalid("it is too long"));
    }
    if s.starts_with('-') {
        return Err(invalid("it must not start with '-'"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    if let Some(c) = s.chars().find(|c| "/:".contains(*c)) {
        return Err(invalid(&format!("it contains '{c}'")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| "`$;&|<>(){}[]*?!~'\"\\#=%^,@".contains(*c))
    {
        return Err(invalid(&format!(
            "it contains the shell metacharacter '{c}'"
        )));
    }

    if let Ok(v) = Version::parse(s.strip_prefix('v').unwrap_or(s)) {
        return Ok(TagSpec::Version(v));
    }

    let shape = "expected an exact version like 1.2.3 or a dist-tag like beta \
                 (lowercase letters, digits, '.', '_', '-', starting with a letter or digit)";
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !first_ok || !rest_ok {
        if looks_like_version(s) {
            return Err(invalid(
                "it looks like a version but is not valid semver (expected e.g. 1.2.3 or 1.2.3-beta.1)",
            ));
        }
        return Err(invalid(shape));
    }
    if s.len() > MAX_DIST_TAG {
        return Err(invalid(&format!(
            "a dist-tag has at most {MAX_DIST_TAG} characters"
        )));
    }
    if looks_like_version(s) {
        return Err(invalid(
            "it looks like a version but is not valid semver (expected e.g. 1.2.3 or 1.2.3-beta.1)",
        ));
    }
    if is_npm_range(s) {
        return Err(invalid(
            "it is a version range, not an exact version: give all three parts, like 1.2.0",
        ));
    }
    Ok(TagSpec::DistTag(s.to_owned()))
}

/// Starts with a full `major.minor.patch` core (after `v`s): a typo for a
/// version, never meant as a dist-tag.
fn looks_like_version(s: &str) -> bool {
    let mut parts = s.trim_start_matches('v').splitn(3, '.');
    let number =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let leading =
        |p: Option<&str>| p.is_some_and(|p| p.bytes().next().is_some_and(|b| b.is_ascii_digit()));
    number(parts.next()) && number(parts.next()) && leading(parts.next())
}

/// Whether npm would read `s` (already limited to `[a-z0-9._-]`) as a
/// semver range (`semver.validRange`), which npm refuses as a dist-tag:
/// `v*` then an X-range `xr[.xr[.xr[-pre]]]`, `xr` being `x` or a number
/// without leading zeros.
fn is_npm_range(s: &str) -> bool {
    let s = s.trim_start_matches('v');
    let (core, pre) = match s.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (s, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let xr = |p: &str| {
        p == "x"
            || p == "0"
            || (!p.is_empty() && !p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if parts.is_empty() || parts.len() > 3 || !parts.iter().all(|p| xr(p)) {
        return false;
    }
    match pre {
        None => true,
        // A prerelease only after all three parts, in dot-separated,
        // non-empty identifiers.
        Some(pre) => {
            parts.len() == 3
                && pre.split('.').all(|id| {
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    }
}
