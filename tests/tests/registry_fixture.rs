//! Smoke test of the registry fixture: a real verdaccio, the real packaging
//! script, real `npm publish`/`dist-tag`, and real global installs with npm,
//! pnpm and bun. Also pins the install layouts documented in
//! docs/install-layouts.md, so a tool upgrade that changes them fails here.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use molt_e2e::process::run;
use molt_e2e::{
    DEFAULT_PACKAGE, GlobalInstall, PackageManager, Registry, dist_tag_add, install_global,
    pack_moltd, publish, write_fake_moltd,
};

const OLD: &str = "1.0.0";
const NEW: &str = "2.0.0";

fn installed_version(bin: &Path) -> Result<String> {
    let out = run(Command::new(bin).arg("--version"), Duration::from_secs(30))?;
    Ok(out.stdout.trim().to_owned())
}

fn package_json_version(install: &GlobalInstall) -> Result<String> {
    let p = install.package_dir.join("package.json");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).with_context(|| p.display().to_string())?)?;
    Ok(doc["version"].as_str().unwrap_or_default().to_owned())
}

/// The bin entrypoint each manager creates, as documented.
fn check_layout(install: &GlobalInstall, version: &str) -> Result<()> {
    let meta = std::fs::symlink_metadata(&install.bin)?;
    match install.manager {
        PackageManager::Npm | PackageManager::Bun => {
            ensure!(
                meta.file_type().is_symlink(),
                "{}: bin should be a symlink",
                install.manager
            );
            let target = std::fs::read_link(&install.bin)?;
            let want = match install.manager {
                PackageManager::Npm => "../lib/node_modules/@molt/moltd/bin/moltd",
                _ => "../install/global/node_modules/@molt/moltd/bin/moltd",
            };
            ensure!(
                target == Path::new(want),
                "{}: bin -> {}",
                install.manager,
                target.display()
            );
            ensure!(
                !std::fs::symlink_metadata(&install.package_dir)?
                    .file_type()
                    .is_symlink(),
                "{}: package root should be a real directory",
                install.manager
            );
        }
        PackageManager::Pnpm => {
            ensure!(meta.is_file(), "pnpm: bin should be a wrapper script");
            let shim = std::fs::read_to_string(&install.bin)?;
            ensure!(shim.starts_with("#!/bin/sh"), "pnpm shim:\n{shim}");
            let versioned =
                format!("/.pnpm/@molt+moltd@{version}/node_modules/@molt/moltd/bin/moltd");
            ensure!(
                shim.contains(&versioned),
                "pnpm shim should name {versioned}:\n{shim}"
            );
            let link = std::fs::read_link(&install.package_dir)
                .context("pnpm: package root should be a symlink")?;
            ensure!(
                link == Path::new(&format!(
                    "../../.pnpm/@molt+moltd@{version}/node_modules/@molt/moltd"
                )),
                "pnpm: package root -> {}",
                link.display()
            );
        }
    }
    Ok(())
}

#[test]
fn publish_and_install_globally_with_npm_pnpm_and_bun() -> Result<()> {
    let test_start = Instant::now();
    let tmp = tempfile::tempdir()?;
    let registry = Registry::start(tmp.path())?;
    eprintln!(
        "registry {} ready in {:?}",
        registry.url(),
        registry.startup
    );

    // Two releases of a stand-in moltd, packed by the real packaging script.
    let t = Instant::now();
    let mut tarballs = Vec::new();
    for version in [OLD, NEW] {
        let bin = tmp.path().join(format!("build-{version}/moltd"));
        write_fake_moltd(&bin, version)?;
        tarballs.push(pack_moltd(
            &bin,
            version,
            &tmp.path().join("dist"),
            DEFAULT_PACKAGE,
        )?);
    }
    eprintln!("packed 2 versions in {:?}", t.elapsed());

    let t = Instant::now();
    publish(&registry, &tarballs[0], None)?;
    publish(&registry, &tarballs[1], Some("beta"))?;
    let tags = registry.dist_tags(DEFAULT_PACKAGE)?;
    assert_eq!(
        tags.get("latest").map(String::as_str),
        Some(OLD),
        "{tags:?}"
    );
    assert_eq!(tags.get("beta").map(String::as_str), Some(NEW), "{tags:?}");
    // Promote the beta, as a release would.
    dist_tag_add(&registry, &format!("{DEFAULT_PACKAGE}@{NEW}"), "latest")?;
    let tags = registry.dist_tags(DEFAULT_PACKAGE)?;
    assert_eq!(
        tags.get("latest").map(String::as_str),
        Some(NEW),
        "{tags:?}"
    );
    assert_eq!(registry.versions(DEFAULT_PACKAGE)?, [OLD, NEW]);
    eprintln!("published 2 versions + dist-tags in {:?}", t.elapsed());

    for manager in PackageManager::ALL {
        let prefix = tmp.path().join(format!("prefix-{manager}"));

        // The older release, by exact version.
        let old = install_global(&registry, manager, &prefix, DEFAULT_PACKAGE, OLD)?;
        assert_eq!(
            installed_version(&old.bin)?,
            format!("moltd {OLD}"),
            "{manager}"
        );
        assert_eq!(package_json_version(&old)?, OLD, "{manager}");
        check_layout(&old, OLD)?;

        // Upgrade in place through the `latest` dist-tag.
        let new = install_global(&registry, manager, &prefix, DEFAULT_PACKAGE, "latest")?;
        assert_eq!(new.bin, old.bin, "{manager}: entrypoint must stay put");
        assert_eq!(
            installed_version(&new.bin)?,
            format!("moltd {NEW}"),
            "{manager}"
        );
        assert_eq!(package_json_version(&new)?, NEW, "{manager}");
        check_layout(&new, NEW)?;
        // The changelog ships at the package root, beside bin/moltd.
        assert_eq!(
            std::fs::read_to_string(new.package_dir.join("CHANGELOG.md"))?,
            molt_e2e::changelogs::changelog_for(NEW),
            "{manager}"
        );

        eprintln!(
            "{manager}: install {OLD} {:?}, upgrade to latest {:?}",
            old.duration, new.duration
        );
    }

    eprintln!("total {:?}", test_start.elapsed());
    Ok(())
}

#[test]
fn pack_script_rejects_bad_versions_and_names() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let bin = tmp.path().join("moltd");
    write_fake_moltd(&bin, "1.0.0")?;
    let out = tmp.path().join("dist");
    assert!(pack_moltd(&bin, "1.0", &out, DEFAULT_PACKAGE).is_err());
    assert!(pack_moltd(&bin, "1.0.0; rm -rf /", &out, DEFAULT_PACKAGE).is_err());
    assert!(pack_moltd(&bin, "1.0.0", &out, "Bad Name").is_err());
    let tgz = pack_moltd(&bin, "1.0.0-rc.1", &out, "moltd")?;
    assert_eq!(tgz.file_name().unwrap(), "moltd-1.0.0-rc.1.tgz");
    Ok(())
}
