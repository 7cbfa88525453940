//! The npm package that ships moltd: packing (through the real
//! `scripts/pack-moltd.sh`), publishing and dist-tags (through the real
//! `npm`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process::{COMMAND_TIMEOUT, run};
use crate::registry::Registry;
use crate::tools::repo_root;

/// Package name used by the tests (scoped names work in verdaccio).
pub const DEFAULT_PACKAGE: &str = "@molt/moltd";

/// The bin entry the package declares.
pub const BIN_NAME: &str = "moltd";

/// Packs `binary` as `package@version` with `scripts/pack-moltd.sh` into
/// `out_dir`, with the test changelog of `version`
/// ([`crate::changelogs::changelog_for`]) as its `CHANGELOG.md`; returns
/// the tarball path.
pub fn pack_moltd(binary: &Path, version: &str, out_dir: &Path, package: &str) -> Result<PathBuf> {
    let script = repo_root().join("scripts/pack-moltd.sh");
    let notes = tempfile::tempdir()?;
    let changelog = notes.path().join("CHANGELOG.md");
    std::fs::write(&changelog, crate::changelogs::changelog_for(version))?;
    let out = run(
        Command::new("bash")
            .arg(&script)
            .arg(binary)
            .arg(version)
            .arg(out_dir)
            .arg(package)
            .arg(&changelog),
        COMMAND_TIMEOUT,
    )?;
    let tarball = PathBuf::from(out.stdout.trim());
    if !tarball.is_file() {
        bail!(
            "pack-moltd.sh printed {:?}, which is not a file\n{}",
            out.stdout,
            out.stderr
        );
    }
    Ok(tarball)
}

/// Writes an executable `#!/bin/sh` stand-in for moltd at `path`: prints
/// `moltd <version>` for `--version` (and for no arguments), exits 2
/// otherwise.
pub fn write_fake_moltd(path: &Path, version: &str) -> Result<()> {
    let refuse = format!("echo \"fake moltd {version}: unknown argument $1\" >&2; exit 2");
    write_stand_in(path, "--version|''", version, &refuse)
}

/// Writes at `path` a moltd that says it is `version` when asked
/// (`--version`) but runs `real`, another build: old code over a new tree,
/// the mixed state a handoff must catch.
pub fn write_moltd_that_claims(path: &Path, version: &str, real: &Path) -> Result<()> {
    let run = format!("exec {} \"$@\"", real.display());
    write_stand_in(path, "--version", version, &run)
}

/// Writes at `path` a moltd that says it is `version` when asked
/// (`--version`) and otherwise waits on the named pipe `gate` (until a
/// test opens and closes it), then exits 1: it installs and verifies, and
/// hangs at start until the test lets it die.
pub fn write_moltd_that_waits(path: &Path, version: &str, gate: &Path) -> Result<()> {
    let wait = format!(
        "cat '{}' >/dev/null; echo 'fake moltd {version}: cannot start' >&2; exit 1",
        gate.display()
    );
    write_stand_in(path, "--version", version, &wait)
}

/// A script that prints `moltd <version>` when its first argument matches
/// `asked` (a `case` pattern) and runs `otherwise` for anything else.
fn write_stand_in(path: &Path, asked: &str, version: &str, otherwise: &str) -> Result<()> {
    write_script(
        path,
        &format!(
            "#!/bin/sh\n\
             case \"$1\" in\n  \
               {asked}) echo 'moltd {version}' ;;\n  \
               *) {otherwise} ;;\n\
             esac\n"
        ),
    )
}

/// An executable script at `path`, its directory made first.
pub(crate) fn write_script(path: &Path, script: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, script).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `npm publish <package>` to `registry` as its user. `package` is a package
/// directory or a tarball. Without `dist_tag` npm tags it `latest` (npm
/// refuses prerelease versions without an explicit tag).
pub fn publish(registry: &Registry, package: &Path, dist_tag: Option<&str>) -> Result<()> {
    // Absolute: npm reads a relative `dir/name.tgz` as a GitHub shorthand.
    let package = std::path::absolute(package)?;
    let mut cmd = npm(registry);
    cmd.arg("publish").arg(&package).arg("--ignore-scripts");
    if let Some(tag) = dist_tag {
        cmd.arg("--tag").arg(tag);
    }
    run(&mut cmd, COMMAND_TIMEOUT)?;
    Ok(())
}

/// `npm dist-tag add <spec> <tag>`, `spec` being `name@version`.
pub fn dist_tag_add(registry: &Registry, spec: &str, tag: &str) -> Result<()> {
    run(
        npm(registry).arg("dist-tag").arg("add").arg(spec).arg(tag),
        COMMAND_TIMEOUT,
    )?;
    Ok(())
}

/// The system npm configured for `registry` only: its npmrc as user config,
/// its URL, its private cache; run from the registry dir so that no project
/// `.npmrc` applies.
pub(crate) fn npm(registry: &Registry) -> Command {
    let mut cmd = Command::new(&registry.tools().npm);
    cmd.envs(registry.client_env())
        .current_dir(registry.dir())
        .arg("--registry")
        .arg(registry.url())
        .arg("--userconfig")
        .arg(registry.userconfig())
        .arg("--cache")
        .arg(registry.npm_cache());
    cmd
}
