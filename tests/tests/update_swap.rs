//! The package swap with the REAL npm, pnpm and bun against a real
//! (offline) registry: locate a global install, stage the other version
//! with the manager, verify, swap, roll back, fail on purpose at every
//! step, downgrade, retire backups, and check the manager still agrees.
//!
//! The packaged moltd is a `#!/bin/sh` stand-in printing `moltd <version>`
//! (layout is what matters here; the real binary's handoff is tested
//! elsewhere).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use molt_daemon::install::layout::{self, Install};
use molt_daemon::update::stage;
use molt_daemon::update::swap::{self, SwapError};
use molt_e2e::process::{COMMAND_TIMEOUT, run};
use molt_e2e::tree::{no_stage_paths, same_tree, snapshot};
use molt_e2e::{
    DEFAULT_PACKAGE, GlobalInstall, PackageManager, Registry, install_global, pack_moltd, publish,
    write_fake_moltd,
};
use molt_protocol::update::InstallMode;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

struct Fixture {
    tmp: tempfile::TempDir,
    registry: Registry,
}

impl Fixture {
    /// A registry with two published versions of the stand-in moltd.
    fn start() -> Result<Fixture> {
        let tmp = tempfile::tempdir()?;
        let registry = Registry::start(tmp.path())?;
        for version in [V1, V2] {
            let bin = tmp.path().join(format!("build-{version}/moltd"));
            write_fake_moltd(&bin, version)?;
            let tgz = pack_moltd(&bin, version, &tmp.path().join("dist"), DEFAULT_PACKAGE)?;
            publish(&registry, &tgz, None)?;
        }
        Ok(Fixture { tmp, registry })
    }

    /// A prefix on the canonical path, so paths compare as the daemon sees them.
    fn prefix(&self, manager: PackageManager) -> Result<PathBuf> {
        Ok(std::fs::canonicalize(self.tmp.path())?.join(format!("prefix-{manager}")))
    }

    fn tool(&self, manager: PackageManager) -> PathBuf {
        let tools = self.registry.tools();
        match manager {
            PackageManager::Npm => tools.npm.clone(),
            // The `.bin/pnpm` launcher, beside the `node` it runs with.
            PackageManager::Pnpm => tools.modules_dir.join(".bin/pnpm"),
            PackageManager::Bun => tools.bun.clone(),
        }
    }

    /// stage_dir + the manager's install into it, as the update engine
    /// runs it: argv and env from `install_argv`, the registry from the
    /// environment.
    fn stage(&self, install: &Install, manager: PackageManager, version: &str) -> Result<PathBuf> {
        let stage = stage::stage_dir(install)?;
        let spec = format!("{}@{version}", install.package);
        let (argv, env) = stage::install_argv(install, &self.tool(manager), &stage, &spec);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(self.registry.client_env())
            .env("PATH", self.registry.tools().path_env())
            // pnpm's metadata cache per registry (a reused port must not
            // see another run's packuments).
            .env("XDG_CACHE_HOME", self.tmp.path().join("xdg-cache"))
            .env("XDG_STATE_HOME", self.tmp.path().join("xdg-state"))
            .envs(env)
            .current_dir(&stage);
        run(&mut cmd, COMMAND_TIMEOUT).with_context(|| format!("{manager}: stage {spec}"))?;
        Ok(stage)
    }

    /// Stages `version` and verifies it.
    fn staged(&self, install: &Install, manager: PackageManager, version: &str) -> Result<PathBuf> {
        let stage = self.stage(install, manager, version)?;
        stage::verify_staged(install, &stage, &semver::Version::parse(version)?)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{manager}: verify staged {version}"))?;
        Ok(stage)
    }
}

fn version_via(bin: &Path) -> Result<String> {
    let out = run(Command::new(bin).arg("--version"), Duration::from_secs(30))?;
    Ok(out.stdout.trim().to_owned())
}

/// The binary inside the package, as moltd's own executable path sees it
/// (for pnpm the versioned `.pnpm/<name>@<v>/…` path).
fn real_binary(global: &GlobalInstall) -> Result<PathBuf> {
    Ok(std::fs::canonicalize(global.package_dir.join("bin/moltd"))?)
}

/// The manager's own listing names `version` (it reads what the swap left).
fn manager_lists(
    fx: &Fixture,
    manager: PackageManager,
    prefix: &Path,
    version: &str,
) -> Result<()> {
    let tools = fx.registry.tools();
    let out = match manager {
        PackageManager::Npm => run(
            Command::new(&tools.npm)
                .args(["ls", "--global", "--json", "--prefix"])
                .arg(prefix)
                .envs(fx.registry.client_env()),
            COMMAND_TIMEOUT,
        )?,
        PackageManager::Pnpm => run(
            tools
                .pnpm_command()
                .args(["ls", "--global", "--json", "--global-dir"])
                .arg(prefix.join("global"))
                .env("PNPM_HOME", prefix)
                .env("PATH", path_with(prefix, &tools.path_env())?)
                .env("XDG_CACHE_HOME", fx.tmp.path().join("xdg-cache"))
                .env("XDG_STATE_HOME", fx.tmp.path().join("xdg-state"))
                .envs(fx.registry.client_env()),
            COMMAND_TIMEOUT,
        )?,
        PackageManager::Bun => run(
            Command::new(&tools.bun)
                .args(["pm", "ls", "--global"])
                .env("BUN_INSTALL", prefix)
                .envs(fx.registry.client_env()),
            COMMAND_TIMEOUT,
        )?,
    };
    let want = match manager {
        PackageManager::Bun => format!("{DEFAULT_PACKAGE}@{version}"),
        _ => format!("\"version\": \"{version}\""),
    };
    ensure!(
        out.stdout.contains(&want),
        "{manager} ls should show {want}:\n{}",
        out.stdout
    );
    Ok(())
}

/// `dir` first on `path` (pnpm refuses `-g` unless its bin dir is on PATH).
fn path_with(dir: &Path, path: &std::ffi::OsStr) -> Result<std::ffi::OsString> {
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(path));
    Ok(std::env::join_paths(dirs)?)
}

fn swap_cycle(manager: PackageManager) -> Result<()> {
    let started = Instant::now();
    let fx = Fixture::start()?;
    let prefix = fx.prefix(manager)?;
    let global = install_global(&fx.registry, manager, &prefix, DEFAULT_PACKAGE, V1)?;

    // locate from the stable bin and from the real binary agree.
    let install = layout::locate(&global.bin)?;
    let want_mode = match manager {
        PackageManager::Npm => InstallMode::Npm,
        PackageManager::Pnpm => InstallMode::Pnpm,
        PackageManager::Bun => InstallMode::Bun,
    };
    assert_eq!(install.mode, want_mode);
    assert_eq!(install.package, DEFAULT_PACKAGE);
    assert_eq!(install.prefix, prefix);
    assert_eq!(install.root, global.package_dir);
    assert_eq!(install.entrypoint, global.bin);
    let real = real_binary(&global)?;
    assert_eq!(
        layout::locate(&real)?,
        install,
        "{manager}: from {}",
        real.display()
    );
    // What the daemon records at start, and whom it restarts through.
    assert_eq!(molt_daemon::install::stable_for(&real), global.bin);
    let info = molt_daemon::install::detect(Some(&real), None);
    assert_eq!(info.surface, want_mode);
    assert_eq!(info.entrypoint.as_deref(), global.bin.to_str());

    let before = snapshot(&prefix)?;

    // Upgrade: stage, verify, swap.
    let stage = fx.staged(&install, manager, V2)?;
    let wrong = stage::verify_staged(&install, &stage, &semver::Version::parse("3.0.0")?);
    ensure!(
        wrong.is_err(),
        "{manager}: verify must reject a version mismatch"
    );
    assert_eq!(
        std::fs::canonicalize(stage::staged_binary(&install, &stage))?,
        std::fs::canonicalize(stage::staged_root(&install, &stage))?.join("bin/moltd")
    );
    let backup = swap::swap(
        &install,
        &stage,
        "run-1",
        &fx.tmp.path().join("update-swap.json"),
    )?;
    stage::cleanup_stage(&stage);
    assert!(!stage.exists());
    assert_eq!(
        version_via(&global.bin)?,
        format!("moltd {V2}"),
        "{manager}"
    );
    no_stage_paths(&prefix)?;
    assert_eq!(backup.previous_version.as_deref(), Some(V1));
    assert_eq!(backup.new_version.as_deref(), Some(V2));
    // The old process can still find the live install from its old path.
    assert_eq!(
        layout::locate(&real)?,
        install,
        "{manager}: from the old binary"
    );
    manager_lists(&fx, manager, &prefix, V2)?;

    // The backup survives a restart: it round-trips through JSON.
    let json = serde_json::to_string(&backup)?;
    let restored: swap::Backup = serde_json::from_str(&json)?;
    assert_eq!(restored, backup);

    // Roll back: v1 again, byte for byte; twice is harmless.
    swap::rollback(&install, &restored)?;
    assert_eq!(
        version_via(&global.bin)?,
        format!("moltd {V1}"),
        "{manager}"
    );
    same_tree(&before, &snapshot(&prefix)?).context(format!("{manager}: after rollback"))?;
    swap::rollback(&install, &restored)?;
    same_tree(&before, &snapshot(&prefix)?).context(format!("{manager}: second rollback"))?;
    manager_lists(&fx, manager, &prefix, V1)?;

    // A backup that is already there: refused before anything changes.
    let stage = fx.staged(&install, manager, V2)?;
    let taken = match manager {
        PackageManager::Pnpm => None,
        _ => Some(
            global
                .package_dir
                .with_file_name(".moltd.molt-backup-taken"),
        ),
    };
    if let Some(taken) = &taken {
        std::fs::create_dir(taken)?;
        let err = swap::swap(
            &install,
            &stage,
            "taken",
            &fx.tmp.path().join("update-swap.json"),
        )
        .unwrap_err();
        assert!(matches!(err, SwapError::Preflight(_)), "{manager}: {err}");
        std::fs::remove_dir(taken)?;
        assert_eq!(version_via(&global.bin)?, format!("moltd {V1}"));
        // Everything but the (still usable) stage is as before.
        let now = snapshot(&prefix)?
            .into_iter()
            .filter(|(path, _)| !path.contains(".molt-stage-"))
            .collect();
        same_tree(&before, &now)?;
    }

    // Fail at each step in turn: every partial swap is undone.
    let mut steps = Vec::new();
    let mut stage = stage;
    let backup = loop {
        let fail_at = steps.len();
        let mut seen = Vec::new();
        let result = swap::swap_with_faults(
            &install,
            &stage,
            "run-2",
            &fx.tmp.path().join("update-swap.json"),
            &mut |step| {
                seen.push(step.to_owned());
                if seen.len() == fail_at + 1 {
                    return Err(std::io::Error::other(format!("injected at {step}")));
                }
                Ok(())
            },
        );
        match result {
            Ok(backup) => {
                stage::cleanup_stage(&stage);
                break backup;
            }
            Err(SwapError::Failed { step, source }) => {
                ensure!(
                    source.to_string().contains("injected"),
                    "{manager}: {source}"
                );
                steps.push(step);
                stage::cleanup_stage(&stage);
                assert_eq!(
                    version_via(&global.bin)?,
                    format!("moltd {V1}"),
                    "{manager}: after a failure at {steps:?}"
                );
                same_tree(&before, &snapshot(&prefix)?)
                    .context(format!("{manager}: after a failure at {steps:?}"))?;
                stage = fx.staged(&install, manager, V2)?;
            }
            Err(e) => bail!("{manager}: unexpected {e}"),
        }
        ensure!(steps.len() < 20, "{manager}: the swap never completes");
    };
    eprintln!("{manager}: injected failures at {steps:?}");
    let min_steps = match manager {
        PackageManager::Npm => 2,  // exchange, park
        PackageManager::Bun => 4,  // exchange, park, package.json, bun.lock
        PackageManager::Pnpm => 6, // move-in, link, wrapper, package.json, 2 locks
    };
    ensure!(steps.len() >= min_steps, "{manager}: only {steps:?}");
    assert_eq!(version_via(&global.bin)?, format!("moltd {V2}"));
    swap::discard(&backup);
    if let Some(previous) = &backup.previous_tree {
        assert!(previous.is_dir(), "{manager}: the only backup is kept");
    }
    let upgraded = snapshot(&prefix)?;

    // Downgrade v2 → v1 the same way, and back.
    let stage = fx.staged(&install, manager, V1)?;
    let down = swap::swap(
        &install,
        &stage,
        "run-3",
        &fx.tmp.path().join("update-swap.json"),
    )?;
    stage::cleanup_stage(&stage);
    assert_eq!(
        version_via(&global.bin)?,
        format!("moltd {V1}"),
        "{manager}"
    );
    manager_lists(&fx, manager, &prefix, V1)?;
    swap::rollback(&install, &down)?;
    assert_eq!(
        version_via(&global.bin)?,
        format!("moltd {V2}"),
        "{manager}"
    );
    same_tree(&upgraded, &snapshot(&prefix)?).context(format!("{manager}: downgrade rollback"))?;

    // Retiring: the newest backup stays for a manual rollback, older go.
    let stage = fx.staged(&install, manager, V1)?;
    let down = swap::swap(
        &install,
        &stage,
        "run-4",
        &fx.tmp.path().join("update-swap.json"),
    )?;
    stage::cleanup_stage(&stage);
    swap::discard(&down);
    if let Some(previous) = &down.previous_tree {
        assert!(previous.is_dir(), "{manager}: the last backup is kept");
    }
    if let Some(older) = &backup.previous_tree {
        assert!(!older.exists(), "{manager}: {} retired", older.display());
    }
    // …and it still rolls back by hand after being retired.
    swap::rollback(&install, &down)?;
    assert_eq!(
        version_via(&global.bin)?,
        format!("moltd {V2}"),
        "{manager}"
    );
    let expected: BTreeMap<String, String> = upgraded
        .into_iter()
        .filter(|(path, _)| !path.contains(".molt-backup-run-2"))
        .collect();
    same_tree(&expected, &snapshot(&prefix)?).context(format!("{manager}: manual rollback"))?;

    // The manager itself is not confused by what molt left.
    let again = install_global(&fx.registry, manager, &prefix, DEFAULT_PACKAGE, V1)?;
    assert_eq!(version_via(&again.bin)?, format!("moltd {V1}"), "{manager}");
    assert_eq!(layout::locate(&again.bin)?.root, install.root);

    eprintln!("{manager}: swap cycle in {:?}", started.elapsed());
    Ok(())
}

#[test]
fn npm_swap_rollback_and_downgrade() -> Result<()> {
    swap_cycle(PackageManager::Npm)
}

#[test]
fn pnpm_swap_rollback_and_downgrade() -> Result<()> {
    swap_cycle(PackageManager::Pnpm)
}

#[test]
fn bun_swap_rollback_and_downgrade() -> Result<()> {
    swap_cycle(PackageManager::Bun)
}

/// pnpm: moltd's own path is the versioned store path; without the wrapper
/// where the layout says it is, there is no stable entrypoint to restart
/// through, and `locate` says so instead of guessing.
#[test]
fn pnpm_without_its_wrapper_is_refused() -> Result<()> {
    let fx = Fixture::start()?;
    let prefix = fx.prefix(PackageManager::Pnpm)?;
    let global = install_global(
        &fx.registry,
        PackageManager::Pnpm,
        &prefix,
        DEFAULT_PACKAGE,
        V1,
    )?;
    let real = real_binary(&global)?;
    let moved = prefix.join("moltd.moved");
    std::fs::rename(&global.bin, &moved)?;
    let err = layout::locate(&real).unwrap_err().to_string();
    assert!(err.contains(&global.bin.display().to_string()), "{err}");
    // A wrapper of another package in its place is refused too.
    std::fs::write(
        &global.bin,
        "#!/bin/sh\nexec /bin/sh \"$basedir/global/5/.pnpm/other@1.0.0/node_modules/other/bin/moltd\" \"$@\"\n",
    )?;
    assert!(layout::locate(&real).is_err());
    std::fs::rename(&moved, &global.bin)?;
    assert_eq!(layout::locate(&real)?.entrypoint, global.bin);
    Ok(())
}
