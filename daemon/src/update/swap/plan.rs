//! The plan: every mutation of the live tree a swap will make, worked out
//! and checked (preflight) before the first one is made.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use molt_protocol::update::InstallMode;
use serde::{Deserialize, Serialize};

use super::files::*;
use super::{Change, Displaced, FileChange, Shim, SwapError};
use crate::install::layout::{
    Install, bin_path, pnpm_store_dir, read_manifest, wrapper_target_text,
};
use crate::update::stage::{STAGE_PREFIX, staged_project, staged_root, staged_shim};

/// The steps of one swap and the versions it goes between.
pub(super) struct Plan {
    pub(super) ops: Vec<Op>,
    pub(super) previous_version: Option<String>,
    pub(super) new_version: Option<String>,
}

/// One mutation of the live tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub(super) enum Op {
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

/// npm and bun: the package root is a real directory, swapped whole.
pub(super) fn plan_tree(install: &Install, stage: &Path, tag: &str) -> Result<Plan, SwapError> {
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
    let previous =
        read_shim(&install.entrypoint).map_err(|e| SwapError::Preflight(e.to_string()))?;
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
pub(super) fn plan_pnpm(install: &Install, stage: &Path, tag: &str) -> Result<Plan, SwapError> {
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
    let previous =
        read_shim(&install.entrypoint).map_err(|e| SwapError::Preflight(e.to_string()))?;
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
pub(super) fn rewrite_stage_paths(
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
pub(super) fn plan_manifest(
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
pub(super) fn plan_copy(from: &Path, to: &Path) -> Result<Vec<Op>, SwapError> {
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
pub(super) fn sole_dependency(project: &Path, package: &str) -> bool {
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
pub(crate) fn set_dependency(
    text: &str,
    package: &str,
    spec: &str,
) -> Result<String, ManifestError> {
    let mut doc: serde_json::Value = serde_json::from_str(text)?;
    let deps = doc
        .get_mut("dependencies")
        .and_then(|d| d.as_object_mut())
        .ok_or(ManifestError::NoDependencies)?;
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
    doc.serialize(&mut ser)?;
    // serde_json writes UTF-8.
    let mut out = String::from_utf8_lossy(&out).into_owned();
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Why a global `package.json` cannot take the new version.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("no \"dependencies\" object")]
    NoDependencies,
}

pub(super) fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && !tag.starts_with('.')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
