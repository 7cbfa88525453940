//! Git checkouts: clean check → fetch → resolve the target commit →
//! checkout → build → verify. The built binary replaces the entrypoint in
//! place (the running process keeps its own inode), so a copy of the
//! previous binary and the previous HEAD are what undo it.

use std::path::{Path, PathBuf};
use std::process::Command;

use molt_protocol::update::{Channel, VersionRef};
use serde::{Deserialize, Serialize};

use super::failure::{Ended, Failure};
use super::record::Run;
use super::target::TagSpec;
use super::{Plan, Prepared, Undo, stage};

/// The remote a checkout updates from.
pub const REMOTE: &str = "origin";
/// The branch the `dev` channel follows.
const DEV_BRANCH: &str = "main";
/// Built when `update.git.buildCommand` is not set.
pub const DEFAULT_BUILD: [&str; 7] = [
    "cargo",
    "build",
    "--release",
    "-p",
    "molt-daemon",
    "--bin",
    "moltd",
];
/// Beside the entrypoint: the binary that ran before the build.
const PREVIOUS_SUFFIX: &str = ".molt-previous";

/// What puts a checkout back: the previous HEAD and binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitUndo {
    pub root: PathBuf,
    pub previous_commit: String,
    /// The branch that was checked out, if HEAD was not detached.
    pub previous_branch: Option<String>,
    pub binary: PathBuf,
    pub binary_backup: PathBuf,
}

/// A git command an undo runs, and how it failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("git {command}: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("restoring {}: {source}", path.display())]
    Restore {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `git -C <root> <args…>` run to its end; its stdout.
fn git(root: &Path, args: &[&str]) -> Result<String, GitError> {
    let argv = git_argv(root, args);
    let command = args.join(" ");
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|source| GitError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(GitError::Failed {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl GitUndo {
    /// Checks the previous HEAD (and branch) out and restores the previous
    /// binary. Blocking.
    pub fn roll_back(&self) -> Result<(), GitError> {
        let target = self
            .previous_branch
            .as_deref()
            .unwrap_or(&self.previous_commit);
        git(&self.root, &["checkout", "--quiet", target])?;
        // A copy, then a rename: the entrypoint is never half written.
        let tmp = self.binary.with_extension("molt-restore");
        std::fs::copy(&self.binary_backup, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &self.binary))
            .map_err(|source| GitError::Restore {
                path: self.binary.clone(),
                source,
            })
    }

    /// The commit checked out now. Blocking.
    pub fn head(&self) -> Result<String, GitError> {
        git(&self.root, &["rev-parse", "HEAD"])
    }

    pub fn retire(&self) {
        match std::fs::remove_file(&self.binary_backup) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.binary_backup.display(), "cannot remove the previous binary: {e}")
            }
        }
    }
}

/// `git -C <root> <args…>`.
pub fn git_argv(root: &Path, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "git".to_owned(),
        "-C".to_owned(),
        root.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

pub async fn prepare(
    run: &mut Run,
    plan: &Plan,
    root: &Path,
    binary: &Path,
    build: Vec<String>,
) -> Result<Prepared, Ended> {
    let dirty = run
        .command(
            "clean",
            git_argv(root, &["status", "--porcelain", "--untracked-files=no"]),
            Vec::new(),
            None,
        )
        .await
        .map_err(|e| Failure::GitFailed(e.to_string()))?;
    if !dirty.trim().is_empty() {
        return Err(Failure::DirtyTree {
            root: root.to_path_buf(),
            changes: dirty.lines().take(3).collect::<Vec<_>>().join(", "),
        }
        .into());
    }
    run.command(
        "fetch",
        git_argv(root, &["fetch", "--quiet", "--tags", "--force", REMOTE]),
        Vec::new(),
        None,
    )
    .await
    .map_err(|e| Failure::FetchFailed(e.to_string()))?;
    let Target {
        commit,
        version,
        head,
        ..
    } = target(run, root, plan).await?;
    let branch = run
        .command(
            "branch",
            git_argv(root, &["branch", "--show-current"]),
            Vec::new(),
            None,
        )
        .await
        .map_err(|e| Failure::GitFailed(e.to_string()))?;
    let undo = GitUndo {
        root: root.to_path_buf(),
        previous_commit: head,
        previous_branch: Some(branch.trim().to_owned()).filter(|b| !b.is_empty()),
        binary: binary.to_path_buf(),
        binary_backup: PathBuf::from(format!("{}{PREVIOUS_SUFFIX}", binary.display())),
    };
    let (from, to) = (undo.binary.clone(), undo.binary_backup.clone());
    run.internal("backup", move || {
        std::fs::copy(&from, &to)
            .map(|_| ())
            .map_err(|e| crate::fsutil::path_error(e, "copy aside", &from))
    })
    .await
    .map_err(|e| Failure::BackupFailed(e.to_string()))?;

    if let Err(failure) = checkout_build_verify(run, root, binary, &commit, build, &version).await {
        let rollback = undo.clone();
        return Err(
            match tokio::task::spawn_blocking(move || rollback.roll_back()).await {
                Ok(restored) => Ended::after_change(failure, restored),
                Err(unfinished) => Ended::after_change(failure, Err(unfinished)),
            },
        );
    }
    Ok(Prepared {
        undo: Undo::Git(undo),
        forced: false,
    })
}

/// What a run would build, and from which commit.
struct Target {
    reference: String,
    commit: String,
    version: semver::Version,
    /// The commit checked out now.
    head: String,
}

/// Resolves the run's ref in the refs fetched so far, and the version a
/// build of it reports; up to date when HEAD is that commit. Reads only.
async fn target(run: &mut Run, root: &Path, plan: &Plan) -> Result<Target, Failure> {
    let (reference, commit) = resolve(run, root, plan.channel, plan.tag.as_ref()).await?;
    let version = version_at(run, root, &commit).await?;
    run.record.target.version = Some(version.to_string());
    run.record.after = VersionRef::new(version.to_string());
    let head = run
        .command(
            "head",
            git_argv(root, &["rev-parse", "HEAD"]),
            Vec::new(),
            None,
        )
        .await
        .map_err(|e| Failure::GitFailed(e.to_string()))?;
    let head = head.trim().to_owned();
    if head == commit {
        return Err(Failure::UpToDate);
    }
    Ok(Target {
        reference,
        commit,
        version,
        head,
    })
}

/// A dry run: what a run would build, from the tags and branches already
/// fetched. It does not fetch: a fetch writes refs, and a dry run changes
/// nothing (and may run beside a real run).
pub async fn plan_only(run: &mut Run, plan: &Plan, root: &Path) -> Ended {
    match target(run, root, plan).await {
        Ok(Target {
            reference,
            commit,
            version,
            ..
        }) => Failure::DryRun {
            would: format!("build {reference} ({commit}), version {version}"),
        }
        .into(),
        Err(failure) => failure.into(),
    }
}

async fn checkout_build_verify(
    run: &mut Run,
    root: &Path,
    binary: &Path,
    commit: &str,
    build: Vec<String>,
    version: &semver::Version,
) -> Result<(), Failure> {
    run.command(
        "checkout",
        git_argv(root, &["checkout", "--quiet", "--detach", commit]),
        Vec::new(),
        None,
    )
    .await
    .map_err(|e| Failure::CheckoutFailed(e.to_string()))?;
    run.command("build", build, Vec::new(), Some(root.to_path_buf()))
        .await
        .map_err(|e| Failure::BuildFailed(e.to_string()))?;
    let (binary, version) = (binary.to_path_buf(), version.clone());
    run.internal("verify", move || {
        stage::check_version(&binary, "moltd", &version)
    })
    .await
    .map_err(|e| Failure::VerifyFailed(e.to_string()))
}

/// The ref to build and its commit: a `tag` (a version `X.Y.Z` means tag
/// `vX.Y.Z`), the dev branch, or the newest release tag on the channel.
async fn resolve(
    run: &mut Run,
    root: &Path,
    channel: Channel,
    tag: Option<&TagSpec>,
) -> Result<(String, String), Failure> {
    let reference = match (tag, channel) {
        (Some(TagSpec::Version(v)), _) => format!("refs/tags/v{v}"),
        (Some(TagSpec::DistTag(t)), _) => format!("refs/tags/{t}"),
        (None, Channel::Dev) => format!("refs/remotes/{REMOTE}/{DEV_BRANCH}"),
        (None, channel) => {
            let tags = run
                .command(
                    "tags",
                    git_argv(root, &["tag", "--list", "v*"]),
                    Vec::new(),
                    None,
                )
                .await
                .map_err(|e| Failure::ResolveFailed(e.to_string()))?;
            let newest = newest_release(&tags, channel == Channel::Beta).ok_or_else(|| {
                Failure::ResolveFailed(format!("no release tag (vX.Y.Z) in {}", root.display()))
            })?;
            format!("refs/tags/v{newest}")
        }
    };
    let commit = run
        .command(
            "resolve",
            git_argv(
                root,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{reference}^{{commit}}"),
                ],
            ),
            Vec::new(),
            None,
        )
        .await
        .map_err(|_| {
            Failure::ResolveFailed(format!("{reference} does not exist in {}", root.display()))
        })?;
    Ok((reference, commit.trim().to_owned()))
}

/// The highest `vX.Y.Z` tag; with `prerelease`, betas count too (so beta
/// falls back to a newer stable release, as for packages).
pub fn newest_release(tags: &str, prerelease: bool) -> Option<semver::Version> {
    tags.lines()
        .filter_map(|t| t.trim().strip_prefix('v'))
        .filter_map(|v| semver::Version::parse(v).ok())
        .filter(|v| prerelease || v.pre.is_empty())
        .max()
}

/// The version a build of `commit` reports: `[workspace.package]` (or
/// `[package]`) `version` in its top-level Cargo.toml.
async fn version_at(run: &mut Run, root: &Path, commit: &str) -> Result<semver::Version, Failure> {
    let manifest = run
        .command(
            "version",
            git_argv(root, &["show", &format!("{commit}:Cargo.toml")]),
            Vec::new(),
            None,
        )
        .await
        .map_err(|e| Failure::ResolveFailed(e.to_string()))?;
    manifest_version(&manifest).ok_or_else(|| {
        Failure::ResolveFailed(format!("Cargo.toml at {commit} names no package version"))
    })
}

pub fn manifest_version(manifest: &str) -> Option<semver::Version> {
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim();
            continue;
        }
        if !matches!(section, "workspace.package" | "package") {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "version"
        {
            let value = value.trim().trim_matches('"');
            return semver::Version::parse(value).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_release_follows_the_channel() {
        let tags = "v0.1.0\nv0.3.0-beta.1\nv0.2.0\nnot-a-version\nvX\n";
        assert_eq!(newest_release(tags, false).unwrap().to_string(), "0.2.0");
        assert_eq!(
            newest_release(tags, true).unwrap().to_string(),
            "0.3.0-beta.1"
        );
        let stable_newer = "v0.3.0-beta.1\nv0.4.0\n";
        assert_eq!(
            newest_release(stable_newer, true).unwrap().to_string(),
            "0.4.0"
        );
        assert_eq!(newest_release("", false), None);
    }

    #[test]
    fn manifest_version_reads_the_package_section() {
        let ws = "[workspace]\nmembers = [\"a\"]\n\n[workspace.package]\nedition = \"2024\"\nversion = \"0.2.0\"\n\n[workspace.dependencies]\nx = { version = \"1\" }\n";
        assert_eq!(manifest_version(ws).unwrap().to_string(), "0.2.0");
        let pkg = "[package]\nname = \"moltd\"\nversion = \"1.2.3-rc.1\"\n";
        assert_eq!(manifest_version(pkg).unwrap().to_string(), "1.2.3-rc.1");
        assert_eq!(manifest_version("[dependencies]\nversion = \"1\"\n"), None);
    }
}
