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

pub use molt_protocol::method::MAX_DIST_TAG;
pub use molt_protocol::tag::TagSpec;

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

/// Parses the operator's `tag` by the rule `molt` checks it with
/// ([`molt_protocol::tag::parse_tag`]).
pub fn parse_tag(s: &str) -> Result<TagSpec, TargetError> {
    molt_protocol::tag::parse_tag(s).map_err(|e| TargetError::InvalidTag {
        input: e.input,
        reason: e.reason,
    })
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
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
