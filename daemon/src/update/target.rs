//! Target resolution for package installs: parse the operator's `tag`, ask
//! the package manager for the package's dist-tags and versions, and pick
//! one exact version from channel + tag. Everything but running the
//! metadata command (a step, see [`super::steps`]) is pure.
//!
//! Metadata commands — each manager's own, all printing the same JSON
//! object `{"dist-tags": {tag: version}, "versions": [version, …]}`
//! (checked with npm 11.19, pnpm 10.34 and bun 1.4.5):
//!
//! | manager | argv |
//! |---|---|
//! | npm  | `npm view --json -- <pkg> dist-tags versions` |
//! | pnpm | `pnpm view --json -- <pkg> dist-tags versions` (pnpm 10 passes `view` through to the `npm` on `PATH`) |
//! | bun  | `bun info --json -- <pkg> dist-tags versions` (`bun pm view` is an alias) |
//!
//! The `--` keeps a package name from ever reading as an option. On failure
//! npm (and so pnpm) exit 1 and print `{"error": {"code", "summary",
//! "detail"}}` on stdout, which [`parse_metadata`] turns into
//! [`TargetError::Registry`]; bun exits 1 with a plain message on stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use molt_protocol::update::{Channel, InstallMode};
use semver::Version;
use serde_json::Value;

/// Longest tag input looked at; anything longer is rejected outright.
const MAX_INPUT: usize = 256;
pub use molt_protocol::method::MAX_DIST_TAG;

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

/// A package's dist-tags and published versions, from the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub dist_tags: BTreeMap<String, Version>,
    pub versions: BTreeSet<Version>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// `tag` is neither an exact version nor a valid dist-tag.
    #[error("invalid version or dist-tag {input}: {reason}")]
    InvalidTag {
        /// The input, quoted and shortened.
        input: String,
        reason: String,
    },
    #[error("no dist-tag {tag} is published (dist-tags: {})", list_or_none(.available))]
    NoDistTag { tag: String, available: Vec<String> },
    #[error("version {version} is not published ({})", match .latest {
        Some(l) => format!("latest is {l}"),
        None => "no latest dist-tag".to_owned(),
    })]
    NotPublished {
        version: Version,
        latest: Option<Version>,
    },
    /// The registry is inconsistent: a dist-tag names a missing version.
    #[error("dist-tag {tag} points at {version}, which is not a published version")]
    DanglingDistTag { tag: String, version: Version },
    #[error(
        "the dev channel follows git main; a package install cannot follow it \
         (use stable or beta, or a git checkout)"
    )]
    DevChannel,
    #[error("install mode {mode} has no package metadata command")]
    UnsupportedMode { mode: &'static str },
    /// The package manager reported a registry error (npm/pnpm `--json`).
    #[error("{manager}: registry error {code}: {summary}")]
    Registry {
        manager: &'static str,
        code: String,
        summary: String,
    },
    /// The output is not the metadata JSON we asked for.
    #[error("{manager}: unexpected metadata output ({detail}): {excerpt}")]
    Malformed {
        manager: &'static str,
        detail: String,
        excerpt: String,
    },
    /// Another error, about a named package.
    #[error("package {package}: {error}")]
    InPackage {
        package: String,
        error: Box<TargetError>,
    },
}

impl TargetError {
    /// Names the package in the message: "package @molt/moltd: no dist-tag
    /// beta is published (dist-tags: latest)".
    pub fn in_package(self, package: &str) -> TargetError {
        TargetError::InPackage {
            package: package.to_owned(),
            error: Box::new(self),
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
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
pub fn parse_tag(s: &str) -> Result<TagSpec, TargetError> {
    let invalid = |reason: &str| TargetError::InvalidTag {
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

/// The package manager's own command that prints `package`'s dist-tags and
/// versions as JSON (see the module docs). `tool` is the manager's
/// executable. `package` must have been validated
/// ([`crate::config::settings::is_valid_npm_package_name`]); it follows a
/// `--` in any case. For a mode without a package manager (git,
/// unmanaged, external) the argv is empty, which [`super::steps::run_step`]
/// records as `spawn-failed`; [`parse_metadata`] names the problem.
pub fn metadata_argv(manager: InstallMode, tool: &Path, package: &str) -> Vec<String> {
    let sub = match manager {
        InstallMode::Npm | InstallMode::Pnpm => "view",
        InstallMode::Bun => "info",
        InstallMode::Git
        | InstallMode::Unmanaged
        | InstallMode::External
        | InstallMode::Unknown => {
            return Vec::new();
        }
    };
    [
        &*tool.to_string_lossy(),
        sub,
        "--json",
        "--",
        package,
        "dist-tags",
        "versions",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Parses the stdout of [`metadata_argv`]'s command. `versions` may be an
/// array or, as older npm prints for a single version, a string. Entries
/// that are not valid semver (no npm client can install them by exact
/// version) are left out. A `{"error": …}` document (npm/pnpm on failure)
/// becomes [`TargetError::Registry`].
pub fn parse_metadata(manager: InstallMode, stdout: &str) -> Result<Metadata, TargetError> {
    if !manager.is_package_manager() {
        return Err(TargetError::UnsupportedMode {
            mode: manager.as_str(),
        });
    }
    let name = manager.as_str();
    let malformed = |detail: &str| TargetError::Malformed {
        manager: name,
        detail: detail.to_owned(),
        excerpt: excerpt(stdout),
    };
    if stdout.trim().is_empty() {
        return Err(malformed("no output"));
    }
    let doc: Value =
        serde_json::from_str(stdout).map_err(|e| malformed(&format!("not JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(malformed("not a JSON object"));
    };
    if let Some(error) = doc.get("error") {
        let field = |k: &str| {
            error
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let summary = match field("summary") {
            s if s.is_empty() => error.to_string(),
            s => s,
        };
        return Err(TargetError::Registry {
            manager: name,
            code: match field("code") {
                c if c.is_empty() => "unknown".to_owned(),
                c => c,
            },
            summary,
        });
    }

    let versions: BTreeSet<Version> = match doc.get("versions") {
        Some(Value::String(v)) => Version::parse(v).into_iter().collect(),
        Some(Value::Array(vs)) => vs
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|v| Version::parse(v).ok())
            .collect(),
        Some(_) => return Err(malformed("\"versions\" is neither a string nor an array")),
        None => return Err(malformed("no \"versions\"")),
    };
    if versions.is_empty() {
        return Err(malformed("no valid semver versions"));
    }
    let dist_tags = match doc.get("dist-tags") {
        Some(Value::Object(tags)) => tags
            .iter()
            .filter_map(|(tag, v)| Some((tag.clone(), Version::parse(v.as_str()?).ok()?)))
            .collect(),
        None => BTreeMap::new(),
        Some(_) => return Err(malformed("\"dist-tags\" is not an object")),
    };
    Ok(Metadata {
        dist_tags,
        versions,
    })
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 200;
    let s = s.trim();
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Picks the one version to install. A `tag` wins over the channel: a
/// version must be published (downgrades allowed), a dist-tag must exist.
/// Without a tag: `stable` → `latest`; `beta` → `beta`, unless it is
/// missing or semver-older than `latest`, then `latest`; `dev` is git only.
pub fn resolve(
    channel: Channel,
    tag: Option<&TagSpec>,
    meta: &Metadata,
) -> Result<Version, TargetError> {
    match tag {
        Some(TagSpec::Version(v)) => {
            if meta.versions.contains(v) {
                Ok(v.clone())
            } else {
                Err(TargetError::NotPublished {
                    version: v.clone(),
                    latest: meta.dist_tags.get("latest").cloned(),
                })
            }
        }
        Some(TagSpec::DistTag(t)) => dist_tag(meta, t),
        None => match channel {
            Channel::Stable => dist_tag(meta, "latest"),
            Channel::Beta => {
                let latest = meta.dist_tags.get("latest");
                match (meta.dist_tags.get("beta"), latest) {
                    (Some(beta), Some(latest)) if beta.cmp_precedence(latest).is_lt() => {
                        dist_tag(meta, "latest")
                    }
                    (Some(_), _) => dist_tag(meta, "beta"),
                    (None, _) => dist_tag(meta, "latest"),
                }
            }
            Channel::Dev => Err(TargetError::DevChannel),
        },
    }
}

fn dist_tag(meta: &Metadata, tag: &str) -> Result<Version, TargetError> {
    let Some(version) = meta.dist_tags.get(tag) else {
        return Err(TargetError::NoDistTag {
            tag: tag.to_owned(),
            available: meta.dist_tags.keys().cloned().collect(),
        });
    };
    if !meta.versions.contains(version) {
        return Err(TargetError::DanglingDistTag {
            tag: tag.to_owned(),
            version: version.clone(),
        });
    }
    Ok(version.clone())
}

#[cfg(test)]
mod tests;
