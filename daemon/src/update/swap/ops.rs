//! Carrying out the plan: each step is recorded in the [`Backup`] as it
//! completes, so [`undo`] (now, or in a successor after a restart) puts
//! back exactly what was done, and [`discard`](super::discard) knows what
//! to retire.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use molt_protocol::update::InstallMode;

use super::files::*;
use super::plan::Op;
use super::{Backup, SwapError};

/// What [`undo`] could not put back, one entry per path.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Unrestored(Vec<String>);
use crate::install::layout::{pnpm_store_dir, read_manifest};

/// What [`discard`] removes: npm/bun: every other
/// `.<name>.molt-backup-*` / `.molt-failed-*` beside the root; pnpm: the
/// displaced directories and the package's other versions in `.pnpm`
/// except the live one and the previous one.
pub(super) fn retired_paths(backup: &Backup) -> Vec<PathBuf> {
    let Some(parent) = backup.root.parent() else {
        return Vec::new();
    };
    let base = crate::install::layout::unscoped(&backup.package);
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

pub(super) fn check_rollback_state(backup: &Backup) -> Result<(), SwapError> {
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

/// Carries out one step and records it; the error names the step.
pub(super) fn apply(
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
pub(super) fn undo(backup: &Backup) -> Result<(), Unrestored> {
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
        Err(Unrestored(errors))
    }
}

/// The parked previous tree becomes the root again; the tree that was
/// swapped in is removed.
pub(super) fn restore_tree(backup: &Backup, parked: &Path) -> io::Result<()> {
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
            crate::install::layout::unscoped(&backup.package),
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

/// fsync the directories a swap or rollback renamed in, so it survives a
/// power loss. Best effort: the renames are done either way.
pub(super) fn sync_dirs(backup: &Backup) {
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

pub(super) fn pnpm_project(backup: &Backup) -> PathBuf {
    let up = if backup.package.contains('/') { 3 } else { 2 };
    crate::install::layout::nth_parent(&backup.root, up)
}
