//! Target resolution against a real registry: each package manager's own
//! metadata command (`metadata_argv`), run through moltd's step runner with
//! the registry's client environment, parsed (`parse_metadata`) and resolved
//! (`resolve`) — for npm, pnpm and bun. Also pins what the tools print on a
//! missing package, and that pnpm 10 delegates `view` to npm.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use molt_daemon::update::steps::{StepSpec, run_step_with_stdout};
use molt_daemon::update::target::{
    Metadata, TagSpec, TargetError, metadata_argv, parse_metadata, parse_tag, resolve,
};
use molt_e2e::{
    DEFAULT_PACKAGE, Registry, Tools, dist_tag_add, pack_moltd, publish, write_fake_moltd,
};
use molt_protocol::update::{Channel, InstallMode, StepRecord, Termination};
use semver::Version;
use tokio_util::sync::CancellationToken;

const SOLO_PACKAGE: &str = "@molt/solo";
const MANAGERS: [InstallMode; 3] = [InstallMode::Npm, InstallMode::Pnpm, InstallMode::Bun];
const MAX_STDOUT: usize = 1 << 20;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn name(mode: InstallMode) -> &'static str {
    match mode {
        InstallMode::Npm => "npm",
        InstallMode::Pnpm => "pnpm",
        InstallMode::Bun => "bun",
        _ => unreachable!(),
    }
}

/// The executable moltd would run for `mode`: the system npm, pnpm's bin
/// link (a `#!/usr/bin/env node` script; `node` is node 24 on
/// [`Tools::path_env`]) and the bun binary.
fn tool(tools: &Tools, mode: InstallMode) -> PathBuf {
    match mode {
        InstallMode::Npm => tools.npm.clone(),
        InstallMode::Pnpm => tools.modules_dir.join(".bin/pnpm"),
        InstallMode::Bun => tools.bun.clone(),
        _ => unreachable!(),
    }
}

struct Env<'a> {
    registry: &'a Registry,
    /// An empty working directory: no project `.npmrc` or `bunfig.toml`.
    cwd: PathBuf,
}

impl Env<'_> {
    fn spec(&self, mode: InstallMode, package: &str, path: std::ffi::OsString) -> StepSpec {
        let tools = self.registry.tools();
        let mut env: Vec<(String, String)> = self
            .registry
            .client_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_string_lossy().into_owned()))
            .collect();
        env.push(("PATH".into(), path.to_string_lossy().into_owned()));
        // bun's manifest cache, per registry (a reused port must not see
        // another run's metadata).
        env.push((
            "BUN_INSTALL_CACHE_DIR".into(),
            self.registry.dir().join("cache/bun").display().to_string(),
        ));
        StepSpec {
            name: "resolve".into(),
            argv: metadata_argv(mode, &tool(tools, mode), package),
            cwd: Some(self.cwd.clone()),
            env,
            timeout: Duration::from_secs(120),
        }
    }

    async fn query(&self, mode: InstallMode, package: &str) -> (StepRecord, Option<String>) {
        let spec = self.spec(mode, package, self.registry.tools().path_env());
        run_step_with_stdout(&spec, &CancellationToken::new(), MAX_STDOUT).await
    }

    /// The metadata, asserting the step succeeded.
    async fn metadata(&self, mode: InstallMode, package: &str) -> Metadata {
        let (record, stdout) = self.query(mode, package).await;
        assert_eq!(
            record.termination,
            Termination::Exited,
            "{mode:?}: {record:#?}"
        );
        assert_eq!(record.exit_code, Some(0), "{mode:?}: {record:#?}");
        let stdout = stdout.expect("metadata fits the limit");
        parse_metadata(mode, &stdout).unwrap_or_else(|e| panic!("{mode:?}: {e}\n{stdout}"))
    }
}

fn publish_version(
    registry: &Registry,
    tmp: &Path,
    package: &str,
    version: &str,
    tag: Option<&str>,
) -> Result<()> {
    let bin = tmp.join(format!("build-{version}/moltd"));
    write_fake_moltd(&bin, version)?;
    let tarball = pack_moltd(&bin, version, &tmp.join("dist"), package)?;
    publish(registry, &tarball, tag)
}

#[tokio::test]
async fn resolves_targets_with_npm_pnpm_and_bun_against_a_real_registry() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let registry = Registry::start(tmp.path())?;
    // latest = 1.1.0, beta = 2.0.0-beta.1; a package with a single version.
    publish_version(&registry, tmp.path(), DEFAULT_PACKAGE, "1.0.0", None)?;
    publish_version(&registry, tmp.path(), DEFAULT_PACKAGE, "1.1.0", None)?;
    publish_version(
        &registry,
        tmp.path(),
        DEFAULT_PACKAGE,
        "2.0.0-beta.1",
        Some("beta"),
    )?;
    publish_version(&registry, tmp.path(), SOLO_PACKAGE, "0.1.0", None)?;

    let cwd = tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd)?;
    let env = Env {
        registry: &registry,
        cwd,
    };

    let want = Metadata {
        dist_tags: [("latest", v("1.1.0")), ("beta", v("2.0.0-beta.1"))]
            .into_iter()
            .map(|(t, v)| (t.to_owned(), v))
            .collect(),
        versions: ["1.0.0", "1.1.0", "2.0.0-beta.1"].map(v).into(),
    };
    let solo = Metadata {
        dist_tags: [("latest".to_owned(), v("0.1.0"))].into(),
        versions: [v("0.1.0")].into(),
    };

    for mode in MANAGERS {
        let (record, _) = env.query(mode, DEFAULT_PACKAGE).await;
        assert!(
            record
                .command
                .ends_with(" --json -- @molt/moltd dist-tags versions"),
            "{}",
            record.command
        );

        let meta = env.metadata(mode, DEFAULT_PACKAGE).await;
        assert_eq!(meta, want, "{mode:?}");
        let at = |channel, tag: Option<&str>| {
            let tag = tag.map(|t| parse_tag(t).unwrap());
            resolve(channel, tag.as_ref(), &meta)
        };
        assert_eq!(at(Channel::Stable, None)?, v("1.1.0"), "{mode:?}");
        assert_eq!(at(Channel::Beta, None)?, v("2.0.0-beta.1"), "{mode:?}");
        assert_eq!(
            at(Channel::Stable, Some("v1.0.0"))?,
            v("1.0.0"),
            "{mode:?} downgrade"
        );
        assert_eq!(
            at(Channel::Stable, Some("beta"))?,
            v("2.0.0-beta.1"),
            "{mode:?}"
        );
        assert_eq!(
            at(Channel::Stable, Some("9.9.9")).unwrap_err().to_string(),
            "version 9.9.9 is not published (latest is 1.1.0)"
        );
        assert_eq!(
            at(Channel::Stable, Some("nightly"))
                .unwrap_err()
                .in_package(DEFAULT_PACKAGE)
                .to_string(),
            "package @molt/moltd: no dist-tag nightly is published (dist-tags: beta, latest)"
        );
        assert_eq!(at(Channel::Dev, None), Err(TargetError::DevChannel));

        assert_eq!(
            env.metadata(mode, SOLO_PACKAGE).await,
            solo,
            "{mode:?} single version"
        );
        eprintln!("{}: {}", name(mode), record.command);
    }

    // Move beta below latest: every manager sees the change at once (no stale
    // metadata cache) and the beta channel falls back to latest.
    dist_tag_add(&registry, &format!("{DEFAULT_PACKAGE}@1.0.0"), "beta")?;
    for mode in MANAGERS {
        let meta = env.metadata(mode, DEFAULT_PACKAGE).await;
        assert_eq!(meta.dist_tags.get("beta"), Some(&v("1.0.0")), "{mode:?}");
        assert_eq!(resolve(Channel::Beta, None, &meta)?, v("1.1.0"), "{mode:?}");
        // An explicit dist-tag is still honoured, even below latest.
        let beta = TagSpec::DistTag("beta".into());
        assert_eq!(
            resolve(Channel::Beta, Some(&beta), &meta)?,
            v("1.0.0"),
            "{mode:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn missing_packages_fail_clearly_with_every_manager() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let registry = Registry::start(tmp.path())?;
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd)?;
    let env = Env {
        registry: &registry,
        cwd,
    };

    for mode in MANAGERS {
        let (record, stdout) = env.query(mode, "@molt/nope").await;
        assert_eq!(record.termination, Termination::Exited, "{mode:?}");
        assert_eq!(record.exit_code, Some(1), "{mode:?}: {record:#?}");
        let err = parse_metadata(mode, stdout.as_deref().unwrap_or_default()).unwrap_err();
        match mode {
            // npm prints a JSON error document on stdout (pnpm runs npm).
            InstallMode::Npm | InstallMode::Pnpm => {
                assert!(
                    matches!(&err, TargetError::Registry { code, summary, .. }
                        if code == "E404" && summary.contains("@molt%2fnope")),
                    "{mode:?}: {err:?}"
                );
            }
            // bun says it on stderr only.
            _ => {
                assert!(matches!(err, TargetError::Malformed { .. }), "{err:?}");
                assert!(
                    record.stderr_tail.contains("404 Not Found"),
                    "{}",
                    record.stderr_tail
                );
            }
        }
    }
    Ok(())
}

/// pnpm 10 has no metadata command of its own: `pnpm view` runs the `npm`
/// found on `PATH`. Pinned so that a pnpm that stops doing so is noticed.
#[tokio::test]
async fn pnpm_view_needs_npm_on_path() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let registry = Registry::start(tmp.path())?;
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd)?;
    let env = Env {
        registry: &registry,
        cwd,
    };

    // node and pnpm only.
    let path = registry.tools().modules_dir.join(".bin").into_os_string();
    let spec = env.spec(InstallMode::Pnpm, DEFAULT_PACKAGE, path);
    let (record, _) = run_step_with_stdout(&spec, &CancellationToken::new(), MAX_STDOUT).await;
    assert_eq!(record.termination, Termination::Exited, "{record:#?}");
    assert_ne!(record.exit_code, Some(0), "{record:#?}");
    assert!(
        record.stderr_tail.contains("spawnSync npm ENOENT"),
        "{}",
        record.stderr_tail
    );
    Ok(())
}
