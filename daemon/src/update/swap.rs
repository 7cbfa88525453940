//! The swap: a verified stage becomes the live install through renames
//! that never leave a mixed tree, recorded in a [`Backup`] that this
//! process, or its successor after a restart, uses to roll back or retire.
//!
//! * npm, bun: the staged root and the live root trade places in one
//!   `renameat2(RENAME_EXCHANGE)` (two `RENAME_NOREPLACE` renames where the
//!   filesystem lacks it), the previous tree is parked beside the root as
//!   `.<name>.molt-backup-<tag>`, the bin symlink is pointed at the root if
//!   it is not already (temp symlink + rename), and bun's global
//!   `package.json` (and `bun.lock`, see below) names the new version.
//! * pnpm: the staged `.pnpm/<name>@<new>` directory moves into the live
//!   `.pnpm` (a new name: the running version's tree is not touched), the
//!   root symlink is swapped (temp symlink + rename), the wrapper script is
//!   rewritten to name the new directory (temp file + rename), and the
//!   global `package.json` (and lock files) name the new version. Until the
//!   root link moves nothing the live install uses has changed, and the
//!   wrapper names a versioned path: every instant runs one whole version.
//!
//! Any failure undoes the completed steps in reverse; the result is the
//! tree as it was, byte for byte.
//!
//! Manager files: the global `package.json` gets the exact new version (so
//! the manager's next global install keeps it rather than reinstalling the
//! old one). Lock files (`bun.lock`; pnpm's `pnpm-lock.yaml` and
//! `node_modules/.pnpm/lock.yaml`) are replaced by the staged ones when
//! moltd is the global project's only dependency: the staged install of the
//! same spec into an empty project is then exactly what the manager would
//! have written. With other global packages the lock files are left as
//! they are: both managers see the specifier in `package.json` no longer
//! matches the lock and re-resolve it at their next global install.
//! A binary `bun.lockb` is never touched.
//!
//! Backup policy: the previous version is kept until the successor has
//! proved it runs the new one, then [`discard`] retires older backups and
//! keeps this last one for a manual rollback: at most one previous tree per
//! install (npm/bun: the parked `.<name>.molt-backup-<tag>`; pnpm: the old
//! `.pnpm/<name>@<old>` directory, which pnpm itself also keeps).

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use molt_protocol::update::InstallMode;
use rustix::fs::{CWD, RenameFlags, renameat_with};
use serde::{Deserialize, Serialize};

use super::layout::{Install, bin_path, pnpm_store_dir, read_manifest, wrapper_target_text};
use super::stage::{STAGE_PREFIX, staged_project, staged_root, staged_shim};

/// The bin entrypoint as a state that can be restored exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Shim {
    Missing,
    Symlink { target: PathBuf },
    Script { content: String, mode: u32 },
}

/// A path's state before and after the swap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change<T> {
    pub path: PathBuf,
    pub previous: T,
    pub current: T,
}

/// A manager file the swap rewrote (`None`: it did not exist).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub path: PathBuf,
    pub previous: Option<String>,
    pub current: String,
    pub mode: u32,
}

/// A directory that was in the way of a staged one, moved aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Displaced {
    pub path: PathBuf,
    pub aside: PathBuf,
}

/// Everything a swap changed, with what was there before: enough for
/// [`rollback`] (also from a successor process, after a restart) and
/// [`discard`]. Only completed steps are recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub mode: InstallMode,
    pub package: String,
    pub tag: String,
    /// The live package root.
    pub root: PathBuf,
    pub entrypoint: PathBuf,
    pub previous_version: Option<String>,
    pub new_version: Option<String>,
    /// npm/bun: where the previous package tree is.
    #[serde(default)]
    pub previous_tree: Option<PathBuf>,
    /// pnpm: the root symlink's target.
    #[serde(default)]
    pub root_link: Option<Change<PathBuf>>,
    /// The bin entrypoint, when the swap changed it.
    #[serde(default)]
    pub shim: Option<Change<Shim>>,
    /// pnpm: virtual-store directories the swap moved in.
    #[serde(default)]
    pub added: Vec<PathBuf>,
    /// pnpm: directories moved aside to make room.
    #[serde(default)]
    pub displaced: Vec<Displaced>,
    #[serde(default)]
    pub files: Vec<FileChange>,
}

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("swap refused, nothing was changed: {0}")]
    Preflight(String),
    #[error("swap failed at {step}: {source}; the previous install was restored")]
    Failed { step: String, source: io::Error },
    #[error(
        "swap failed at {step}: {source}; restoring the previous install ALSO failed: \
         {restore} (the backup record names every path)"
    )]
    RestoreFailed {
        step: String,
        source: io::Error,
        restore: String,
        backup: Box<Backup>,
    },
    #[error("rollback refused: {0}")]
    Diverged(String),
    #[error("rollback failed: {0}")]
    Rollback(String),
}

/// The steps of one swap and the versions it goes between.
struct Plan {
    ops: Vec<Op>,
    previous_version: Option<String>,
    new_version: Option<String>,
}

/// One mutation of the live tree.
#[derive(Debug)]
enum Op {
    /// npm/bun: staged root ⇄ live root, then park the previous tree.
    ExchangeRoot {
        staged: PathBuf,
        live: PathBuf,
        park: PathBuf,
    },
    Displace(Displaced),
    MoveIn {
        from: PathBuf,
        to: PathBuf,
    },
    RootLink(Change<PathBuf>),
    Shim(Change<Shim>),
    File(FileChange),
}

/// Makes the verified `stage` the live install. `backup_tag` (e.g. the run
/// id) names the backup; letters, digits, `.`, `_`, `-` only.
pub fn swap(install: &Install, stage: &Path, backup_tag: &str) -> Result<Backup, SwapError> {
    swap_with_faults(install, stage, backup_tag, &mut |_| Ok(()))
}

/// [`swap`] with a hook called before each mutating step with the step's
/// name; an error from it fails that step. For tests that prove every
/// partial swap is undone.
#[doc(hidden)]
pub fn swap_with_faults(
    install: &Install,
    stage: &Path,
    backup_tag: &str,
    fault: &mut dyn FnMut(&str) -> io::Result<()>,
) -> Result<Backup, SwapError> {
    if !valid_tag(backup_tag) {
        return Err(SwapError::Preflight(format!(
            "backup tag {backup_tag:?} must be 1-64 letters, digits, '.', '_' or '-'"
        )));
    }
    let Plan {
        ops,
        previous_version,
        new_version,
    } = match install.mode {
        InstallMode::Npm | InstallMode::Bun => plan_tree(install, stage, backup_tag)?,
        InstallMode::Pnpm => plan_pnpm(install, stage, backup_tag)?,
        other => {
            return Err(SwapError::Preflight(format!(
                "{other:?} installs are not swapped"
            )));
        }
    };
    let mut backup = Backup {
        mode: install.mode,
        package: install.package.clone(),
        tag: backup_tag.to_owned(),
        root: install.root.clone(),
        entrypoint: install.entrypoint.clone(),
        previous_version,
        new_version,
        previous_tree: None,
        root_link: None,
        shim: None,
        added: Vec::new(),
        displaced: Vec::new(),
        files: Vec::new(),
    };
    for op in ops {
        if let Err((step, source)) = apply(op, &mut backup, fault) {
            tracing::warn!(%step, "swap failed: {source}; undoing");
            return match undo(&backup) {
                Ok(()) => Err(SwapError::Failed { step, source }),
                Err(restore) => Err(SwapError::RestoreFailed {
                    step,
                    source,
                    restore,
                    backup: Box::new(backup),
                }),
            };
        }
    }
    sync_dirs(&backup);
    tracing::info!(
        package = %backup.package, from = ?backup.previous_version, to = ?backup.new_version,
        "install swapped"
    );
    Ok(backup)
}

/// Puts back the install `backup` recorded (after a successor failed to
/// start, or by hand). Refused when the live tree is neither the swapped
/// one nor already the previous one (someone installed something since).
/// Calling it again after it succeeded changes nothing.
pub fn rollback(install: &Install, backup: &Backup) -> Result<(), SwapError> {
    if install.root != backup.root || install.mode != backup.mode {
        return Err(SwapError::Diverged(format!(
            "the backup is of {} ({:?}), this install is {} ({:?})",
            backup.root.display(),
            backup.mode,
            install.root.display(),
            install.mode
        )));
    }
    check_rollback_state(backup)?;
    undo(backup).map_err(SwapError::Rollback)?;
    sync_dirs(backup);
    tracing::info!(
        package = %backup.package, to = ?backup.previous_version, "swap rolled back"
    );
    Ok(())
}

/// Retires a verified swap's backup: older backups of this install go,
/// this one (the previous version) stays for a manual rollback. Best
/// effort; failures are logged.
pub fn discard(backup: &Backup) {
    for path in retired_paths(backup) {
        match fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed an old install backup"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "cannot remove an old backup: {e}"),
        }
    }
}

/// What [`discard`] removes: npm/bun: every other
/// `.<name>.molt-backup-*` / `.molt-failed-*` beside the root; pnpm: the
/// displaced directories and the package's other versions in `.pnpm`
/// except the live one and the previous one.
fn retired_paths(backup: &Backup) -> Vec<PathBuf> {
    let Some(parent) = backup.root.parent() else {
        return Vec::new();
    };
    let base = super::layout::unscoped(&backup.package);
    match backup.mode {
        InstallMode::Npm | InstallMode::Bun => {
            let keep = backup.previous_tree.as_deref();
            list(parent)
                .into_iter()
                .filter(|p| {
                    let name = file_name(p);
                    (name.starts_with(&format!(".{base}.molt-backup-"))
                        || name.starts_with(&format!(".{base}.molt-failed-")))
                        && Some(p.as_path()) != keep
                })
                .collect()
        }
        InstallMode::Pnpm => {
            let project = pnpm_project(backup);
            let store = project.join(".pnpm");
            let dir_of = |link: &Path| -> Option<String> {
                let target = lexical(&parent.join(link));
                pnpm_store_dir(&project, &backup.package, &target)
            };
            let live = fs::read_link(&backup.root).ok().and_then(|l| dir_of(&l));
            let previous = backup.root_link.as_ref().and_then(|c| dir_of(&c.previous));
            let escaped = format!("{}@", backup.package.replace('/', "+"));
            list(&store)
                .into_iter()
                .filter(|p| {
                    let name = file_name(p);
                    let old_version = name.starts_with(&escaped)
                        && Some(&name) != live.as_ref()
                        && Some(&name) != previous.as_ref();
                    old_version || (name.starts_with('.') && name.contains(".molt-backup-"))
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

fn check_rollback_state(backup: &Backup) -> Result<(), SwapError> {
    match backup.mode {
        InstallMode::Pnpm => {
            let Some(link) = &backup.root_link else {
                return Ok(());
            };
            let now = fs::read_link(&backup.root)
                .map_err(|e| SwapError::Diverged(format!("{}: {e}", backup.root.display())))?;
            if now != link.current && now != link.previous {
                return Err(SwapError::Diverged(format!(
                    "{} now points at {}, which this swap did not install",
                    backup.root.display(),
                    now.display()
                )));
            }
        }
        _ => {
            let version = read_manifest(&backup.root.join("package.json"))
                .ok()
                .and_then(|m| m["version"].as_str().map(str::to_owned));
            let parked = backup.previous_tree.as_deref().is_some_and(exists);
            if version != backup.new_version && version != backup.previous_version {
                return Err(SwapError::Diverged(format!(
                    "{} holds version {version:?}, neither {:?} (swapped in) nor {:?} (before)",
                    backup.root.display(),
                    backup.new_version,
                    backup.previous_version
                )));
            }
            if !parked && version != backup.previous_version {
                return Err(SwapError::Rollback(format!(
                    "the previous tree {:?} is gone",
                    backup.previous_tree
                )));
            }
        }
    }
    Ok(())
}

/// npm and bun: the package root is a real directory, swapped whole.
fn plan_tree(install: &Install, stage: &Path, tag: &str) -> Result<Plan, SwapError> {
    let staged = staged_root(install, stage);
    require_dir(&staged, "staged package root")?;
    require_dir(&install.root, "live package root")?;
    let previous_version = version_of(&install.root);
    let new_version = version_of(&staged);
    let park = sibling(
        &install.root,
        &format!(".{}.molt-backup-{tag}", install.unscoped_name()),
    );
    if exists(&park) {
        return Err(SwapError::Preflight(format!(
            "{} already exists (a backup with this tag)",
            park.display()
        )));
    }
    let mut ops = vec![Op::ExchangeRoot {
        staged,
        live: install.root.clone(),
        park,
    }];

    // The shim the manager made in the stage mirrors the live layout.
    let staged_shim = staged_shim(install, stage);
    let target = fs::read_link(&staged_shim)
        .map_err(|e| SwapError::Preflight(format!("staged bin {}: {e}", staged_shim.display())))?;
    let current = Shim::Symlink { target };
    let previous = read_shim(&install.entrypoint).map_err(SwapError::Preflight)?;
    if previous != current {
        ops.push(Op::Shim(Change {
            path: install.entrypoint.clone(),
            previous,
            current,
        }));
    }

    if install.mode == InstallMode::Bun {
        let project = install.project_dir();
        let staged_project = staged_project(install, stage);
        ops.extend(plan_manifest(install, &project, &staged_project)?);
        if sole_dependency(&project, &install.package) {
            ops.extend(plan_copy(
                &staged_project.join("bun.lock"),
                &project.join("bun.lock"),
            )?);
        }
    }
    Ok(Plan {
        ops,
        previous_version,
        new_version,
    })
}

/// pnpm: the root is a symlink into the virtual store; the new version's
/// directory moves in beside the old one.
fn plan_pnpm(install: &Install, stage: &Path, tag: &str) -> Result<Plan, SwapError> {
    let project = canonical(&install.project_dir())?;
    let staged_project = canonical(&staged_project(install, stage))?;
    let staged = staged_root(install, stage);
    let pkg = &install.package;
    let link_parent = install.root.parent().unwrap_or(Path::new("/"));

    let previous_link = fs::read_link(&install.root)
        .map_err(|e| SwapError::Preflight(format!("{}: {e}", install.root.display())))?;
    let old_dir = pnpm_store_dir(&project, pkg, &lexical(&link_parent.join(&previous_link)))
        .ok_or_else(|| {
            SwapError::Preflight(format!(
                "{} -> {} is not {pkg} in {}/.pnpm",
                install.root.display(),
                previous_link.display(),
                project.display()
            ))
        })?;
    let new_link = fs::read_link(&staged)
        .map_err(|e| SwapError::Preflight(format!("{}: {e}", staged.display())))?;
    // The staged link is relative, made for the same layout: it must mean
    // the same place under the live project.
    let new_dir = pnpm_store_dir(&project, pkg, &lexical(&link_parent.join(&new_link)))
        .filter(|dir| {
            pnpm_store_dir(
                &staged_project,
                pkg,
                &lexical(&staged.parent().unwrap_or(Path::new("/")).join(&new_link)),
            )
            .as_ref()
                == Some(dir)
        })
        .ok_or_else(|| {
            SwapError::Preflight(format!(
                "staged {} -> {} does not fit the live layout",
                staged.display(),
                new_link.display()
            ))
        })?;
    let previous_version = version_of(&install.root);
    let new_version = version_of(&staged);

    let mut ops = Vec::new();
    let store = project.join(".pnpm");
    let staged_store = staged_project.join(".pnpm");
    let mut found_new = false;
    for from in list(&staged_store) {
        let name = file_name(&from);
        if name.starts_with('.') || name == "node_modules" || !from.is_dir() {
            continue;
        }
        let to = store.join(&name);
        if name == new_dir {
            found_new = true;
            let given = self::staged_project(install, stage);
            rewrite_stage_paths(&from, &[given, staged_project.clone()], &project)?;
            if exists(&to) {
                let aside = store.join(format!(".{name}.molt-backup-{tag}"));
                if exists(&aside) {
                    return Err(SwapError::Preflight(format!(
                        "{} already exists (a backup with this tag)",
                        aside.display()
                    )));
                }
                ops.push(Op::Displace(Displaced {
                    path: to.clone(),
                    aside,
                }));
            }
            ops.push(Op::MoveIn { from, to });
        } else if !exists(&to) {
            // A dependency the live store lacks (moltd has none today).
            ops.push(Op::MoveIn { from, to });
        }
    }
    if !found_new {
        return Err(SwapError::Preflight(format!(
            "{} has no {new_dir}",
            staged_store.display()
        )));
    }
    if new_link != previous_link {
        ops.push(Op::RootLink(Change {
            path: install.root.clone(),
            previous: previous_link,
            current: new_link,
        }));
    }

    // The wrapper names the versioned directory: point it at the new one.
    let previous = read_shim(&install.entrypoint).map_err(SwapError::Preflight)?;
    let Shim::Script { content, mode } = &previous else {
        return Err(SwapError::Preflight(format!(
            "{} is not pnpm's wrapper script",
            install.entrypoint.display()
        )));
    };
    let old_needle = format!("/.pnpm/{old_dir}/");
    if !content.contains(&format!("{old_needle}node_modules/{pkg}/")) {
        return Err(SwapError::Preflight(format!(
            "{} does not run the live {old_dir}",
            install.entrypoint.display()
        )));
    }
    let new_content = content.replace(&old_needle, &format!("/.pnpm/{new_dir}/"));
    let bin_rel = read_manifest(&staged.join("package.json"))
        .ok()
        .and_then(|m| bin_path(&m, pkg, install.bin_name()))
        .ok_or_else(|| SwapError::Preflight(format!("staged {pkg} declares no bin")))?;
    let want_tail = format!(
        ".pnpm/{new_dir}/node_modules/{pkg}/{}",
        bin_rel.trim_start_matches("./")
    );
    if !wrapper_target_text(&new_content).is_some_and(|t| t.ends_with(&want_tail)) {
        return Err(SwapError::Preflight(format!(
            "the new version's bin ({bin_rel}) is not where the wrapper {} runs it; \
             reinstall with pnpm",
            install.entrypoint.display()
        )));
    }
    if new_content != *content {
        ops.push(Op::Shim(Change {
            path: install.entrypoint.clone(),
            previous: previous.clone(),
            current: Shim::Script {
                content: new_content,
                mode: *mode,
            },
        }));
    }

    ops.extend(plan_manifest(install, &project, &staged_project)?);
    if sole_dependency(&project, pkg) {
        ops.extend(plan_copy(
            &staged_project.join("pnpm-lock.yaml"),
            &project.join("pnpm-lock.yaml"),
        )?);
        ops.extend(plan_copy(
            &staged_project.join("node_modules/.pnpm/lock.yaml"),
            &project.join("node_modules/.pnpm/lock.yaml"),
        )?);
    }
    Ok(Plan {
        ops,
        previous_version,
        new_version,
    })
}

/// pnpm writes the staged absolute paths into the package's own
/// `node_modules/.bin` wrappers; make them name the live project before
/// the directory moves in. Only generated files (one link) are rewritten,
/// by temp + rename, so no file shared with the store is ever modified.
fn rewrite_stage_paths(
    dir: &Path,
    staged_projects: &[PathBuf],
    project: &Path,
) -> Result<(), SwapError> {
    let to = format!("{}/", project.display());
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for p in list(&d) {
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(p);
            } else if meta.is_file()
                && p.parent()
                    .is_some_and(|d| d.file_name() == Some(".bin".as_ref()))
                && std::os::unix::fs::MetadataExt::nlink(&meta) == 1
                && let Ok(text) = fs::read_to_string(&p)
                && text.contains(STAGE_PREFIX)
            {
                // As pnpm was given it, and canonical.
                let rewritten = staged_projects.iter().fold(text, |t, from| {
                    t.replace(&format!("{}/", from.display()), &to)
                });
                let mode = meta.permissions().mode() & 0o7777;
                replace_file(&p, rewritten.as_bytes(), mode)
                    .map_err(|e| SwapError::Preflight(format!("{}: {e}", p.display())))?;
            }
        }
    }
    Ok(())
}

/// The global `package.json` names the staged spec of the package.
fn plan_manifest(
    install: &Install,
    project: &Path,
    staged_project: &Path,
) -> Result<Vec<Op>, SwapError> {
    let path = project.join("package.json");
    let text = fs::read_to_string(&path)
        .map_err(|e| SwapError::Preflight(format!("{}: {e}", path.display())))?;
    let staged = read_manifest(&staged_project.join("package.json"))
        .map_err(|e| SwapError::Preflight(e.to_string()))?;
    let spec = staged["dependencies"][&install.package]
        .as_str()
        .ok_or_else(|| {
            SwapError::Preflight(format!(
                "the staged global package.json does not list {}",
                install.package
            ))
        })?;
    let current = set_dependency(&text, &install.package, spec)
        .map_err(|e| SwapError::Preflight(format!("{}: {e}", path.display())))?;
    if current == text {
        return Ok(Vec::new());
    }
    Ok(vec![Op::File(FileChange {
        mode: file_mode(&path),
        path,
        previous: Some(text),
        current,
    })])
}

/// `to` gets `from`'s content, when both exist and differ.
fn plan_copy(from: &Path, to: &Path) -> Result<Vec<Op>, SwapError> {
    let (Ok(current), Ok(previous)) = (fs::read_to_string(from), fs::read_to_string(to)) else {
        return Ok(Vec::new());
    };
    if current == previous {
        return Ok(Vec::new());
    }
    Ok(vec![Op::File(FileChange {
        mode: file_mode(to),
        path: to.to_path_buf(),
        previous: Some(previous),
        current,
    })])
}

/// The global project depends on `package` and nothing else.
fn sole_dependency(project: &Path, package: &str) -> bool {
    let Ok(manifest) = read_manifest(&project.join("package.json")) else {
        return false;
    };
    let only_ours = manifest["dependencies"]
        .as_object()
        .is_some_and(|deps| deps.len() == 1 && deps.contains_key(package));
    let others = [
        "devDependencies",
        "optionalDependencies",
        "peerDependencies",
    ]
    .iter()
    .any(|k| manifest[*k].as_object().is_some_and(|m| !m.is_empty()));
    only_ours && !others
}

/// `text` with `dependencies[package] = spec`, in the file's own
/// indentation and final newline.
pub(crate) fn set_dependency(text: &str, package: &str, spec: &str) -> Result<String, String> {
    let mut doc: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let deps = doc
        .get_mut("dependencies")
        .and_then(|d| d.as_object_mut())
        .ok_or("no \"dependencies\" object")?;
    deps.insert(package.to_owned(), spec.into());
    let indent = text
        .lines()
        .skip(1)
        .find_map(|l| {
            let ws: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            (!ws.is_empty()).then_some(ws)
        })
        .unwrap_or_else(|| "  ".to_owned());
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    doc.serialize(&mut ser).map_err(|e| e.to_string())?;
    let mut out = String::from_utf8(out).map_err(|e| e.to_string())?;
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Carries out one step and records it; the error names the step.
fn apply(
    op: Op,
    backup: &mut Backup,
    fault: &mut dyn FnMut(&str) -> io::Result<()>,
) -> Result<(), (String, io::Error)> {
    let step = |name: &str, path: &Path| format!("{name} {}", path.display());
    match op {
        Op::ExchangeRoot { staged, live, park } => {
            let name = step("exchange-root", &live);
            fault("exchange-root").map_err(|e| (name.clone(), e))?;
            if exchange(&staged, &live).map_err(|e| (name.clone(), e))? {
                backup.previous_tree = Some(staged.clone());
                let name = step("park-previous", &park);
                fault("park-previous").map_err(|e| (name.clone(), e))?;
                rename_noreplace(&staged, &park).map_err(|e| (name, e))?;
                backup.previous_tree = Some(park);
            } else {
                let name = step("park-previous", &park);
                fault("park-previous").map_err(|e| (name.clone(), e))?;
                rename_noreplace(&live, &park).map_err(|e| (name, e))?;
                backup.previous_tree = Some(park);
                let name = step("install-root", &live);
                fault("install-root").map_err(|e| (name.clone(), e))?;
                rename_noreplace(&staged, &live).map_err(|e| (name, e))?;
            }
        }
        Op::Displace(d) => {
            let name = step("displace", &d.path);
            fault("displace").map_err(|e| (name.clone(), e))?;
            rename_noreplace(&d.path, &d.aside).map_err(|e| (name, e))?;
            backup.displaced.push(d);
        }
        Op::MoveIn { from, to } => {
            let name = step("move-in", &to);
            fault("move-in").map_err(|e| (name.clone(), e))?;
            rename_noreplace(&from, &to).map_err(|e| (name, e))?;
            backup.added.push(to);
        }
        Op::RootLink(change) => {
            let name = step("root-link", &change.path);
            fault("root-link").map_err(|e| (name.clone(), e))?;
            replace_symlink(&change.path, &change.current).map_err(|e| (name, e))?;
            backup.root_link = Some(change);
        }
        Op::Shim(change) => {
            let name = step("bin", &change.path);
            fault("bin").map_err(|e| (name.clone(), e))?;
            write_shim(&change.path, &change.current).map_err(|e| (name, e))?;
            backup.shim = Some(change);
        }
        Op::File(change) => {
            let name = step("manifest", &change.path);
            fault("manifest").map_err(|e| (name.clone(), e))?;
            replace_file(&change.path, change.current.as_bytes(), change.mode)
                .map_err(|e| (name, e))?;
            backup.files.push(change);
        }
    }
    Ok(())
}

/// Undoes every recorded step, newest kind first: manager files, the bin,
/// the root link, added store directories, displaced ones, the tree.
/// Each undo checks the current state, so a repeated call is harmless.
fn undo(backup: &Backup) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut note = |what: &str, path: &Path, r: io::Result<()>| {
        if let Err(e) = r {
            errors.push(format!("{what} {}: {e}", path.display()));
        }
    };
    for f in backup.files.iter().rev() {
        let r = match &f.previous {
            Some(text) if fs::read(&f.path).ok().as_deref() != Some(text.as_bytes()) => {
                replace_file(&f.path, text.as_bytes(), f.mode)
            }
            Some(_) => Ok(()),
            None => remove_if_exists(&f.path),
        };
        note("restore", &f.path, r);
    }
    if let Some(shim) = &backup.shim
        && read_shim(&shim.path).ok().as_ref() != Some(&shim.previous)
    {
        note(
            "restore bin",
            &shim.path,
            write_shim(&shim.path, &shim.previous),
        );
    }
    if let Some(link) = &backup.root_link
        && fs::read_link(&link.path).ok().as_ref() != Some(&link.previous)
    {
        note(
            "restore link",
            &link.path,
            replace_symlink(&link.path, &link.previous),
        );
    }
    for added in backup.added.iter().rev() {
        // A directory that replaced a displaced one whose copy was already
        // retired stays: it is that same package version.
        let retired = backup
            .displaced
            .iter()
            .any(|d| &d.path == added && !exists(&d.aside));
        if !retired {
            note("remove", added, remove_tree_if_exists(added));
        }
    }
    for d in backup.displaced.iter().rev() {
        if exists(&d.aside) && !exists(&d.path) {
            note("restore", &d.path, rename_noreplace(&d.aside, &d.path));
        }
    }
    if let Some(parked) = &backup.previous_tree
        && exists(parked)
    {
        note("restore", &backup.root, restore_tree(backup, parked));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The parked previous tree becomes the root again; the tree that was
/// swapped in is removed.
fn restore_tree(backup: &Backup, parked: &Path) -> io::Result<()> {
    let root = &backup.root;
    if !exists(root) {
        return rename_noreplace(parked, root);
    }
    if exchange(parked, root)? {
        // `parked` now holds the failed new tree.
        return fs::remove_dir_all(parked);
    }
    let failed = sibling(
        root,
        &format!(
            ".{}.molt-failed-{}-{}",
            super::layout::unscoped(&backup.package),
            backup.tag,
            crate::fsutil::random_suffix()
        ),
    );
    rename_noreplace(root, &failed)?;
    if let Err(e) = rename_noreplace(parked, root) {
        let _ = rename_noreplace(&failed, root);
        return Err(e);
    }
    fs::remove_dir_all(&failed)
}

/// Reads the bin entrypoint's state.
fn read_shim(path: &Path) -> Result<Shim, String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Shim::Missing),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Shim::Symlink { target });
    }
    if !meta.is_file() {
        return Err(format!(
            "{} is neither a file nor a symlink",
            path.display()
        ));
    }
    let content = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Shim::Script {
        content,
        mode: meta.permissions().mode() & 0o7777,
    })
}

fn write_shim(path: &Path, shim: &Shim) -> io::Result<()> {
    match shim {
        Shim::Missing => remove_if_exists(path),
        Shim::Symlink { target } => replace_symlink(path, target),
        Shim::Script { content, mode } => replace_file(path, content.as_bytes(), *mode),
    }
}

/// Atomically makes `path` a symlink to `target`: a temp link beside it,
/// renamed over it.
fn replace_symlink(path: &Path, target: &Path) -> io::Result<()> {
    let tmp = temp_beside(path);
    symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Atomically replaces `path` with `bytes` at `mode`: temp file beside it,
/// fsync, rename. (Not [`crate::fsutil::write_atomic`]: the manager's files
/// keep the manager's modes, not moltd's 0600.)
fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_beside(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.set_permissions(Permissions::from_mode(mode))?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    sibling(
        path,
        &format!(".{name}.molt-tmp-{}", crate::fsutil::random_suffix()),
    )
}

#[cfg(test)]
thread_local! {
    /// Tests take the two-rename path of filesystems without RENAME_EXCHANGE.
    static NO_EXCHANGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Exchanges two paths atomically. `Ok(false)` when the filesystem cannot.
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(test)]
    if NO_EXCHANGE.get() {
        return Ok(false);
    }
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(e) if unsupported(e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Renames, failing if `to` exists (checked by the kernel where it can).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if unsupported(e) => {
            if exists(to) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", to.display()),
                ));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

fn unsupported(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::INVAL
        || e == rustix::io::Errno::NOSYS
        || e == rustix::io::Errno::OPNOTSUPP
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn remove_tree_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// fsync the directories a swap or rollback renamed in, so it survives a
/// power loss. Best effort: the renames are done either way.
fn sync_dirs(backup: &Backup) {
    let mut dirs: Vec<PathBuf> = [Some(&backup.root), Some(&backup.entrypoint)]
        .into_iter()
        .chain(backup.files.iter().map(|f| &f.path).map(Some))
        .chain(backup.added.iter().map(Some))
        .flatten()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), "fsync: {e}");
        }
    }
}

fn pnpm_project(backup: &Backup) -> PathBuf {
    let up = if backup.package.contains('/') { 3 } else { 2 };
    super::layout::nth_parent(&backup.root, up)
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && !tag.starts_with('.')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn require_dir(path: &Path, what: &str) -> Result<(), SwapError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SwapError::Preflight(format!(
            "{what} {} is not a directory",
            path.display()
        ))),
        Err(e) => Err(SwapError::Preflight(format!(
            "{what} {}: {e}",
            path.display()
        ))),
    }
}

fn canonical(path: &Path) -> Result<PathBuf, SwapError> {
    fs::canonicalize(path).map_err(|e| SwapError::Preflight(format!("{}: {e}", path.display())))
}

fn version_of(root: &Path) -> Option<String> {
    read_manifest(&root.join("package.json"))
        .ok()
        .and_then(|m| m["version"].as_str().map(str::to_owned))
}

fn file_mode(path: &Path) -> u32 {
    fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777)
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).join(name)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Entries of a directory, sorted; empty when it cannot be read.
fn list(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// `path` with `.` and `..` resolved without touching the filesystem
/// (for relative symlink targets).
pub(crate) fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
