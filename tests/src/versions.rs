//! moltd built at a given version. The version is compiled in
//! (`MOLT_VERSION`), so each one is a build: done once in a target dir of
//! its own, and cached by a fingerprint of the sources so later runs reuse
//! it until the code changes.
//!
//! Tests never build: a build of the workspace takes minutes on a busy
//! machine, under the test runner's kill timeout. `scripts/test` runs
//! `cargo run -p molt-e2e --bin build-versions` first, which builds (and
//! packs) every version in [`SUITE`], plain and with fault injection; a
//! test only looks its build up ([`moltd_binary`], [`packed_moltd`],
//! [`moltd_binary_with_faults`]) and fails saying that command when it is
//! missing. Benchmarks build what they need ([`moltd_release_binary`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::tools::repo_root;
use crate::updates::{NEW, OLD};

/// Every version the test suite runs moltd at.
pub const SUITE: &[&str] = &[OLD, NEW];

/// How to build [`SUITE`] for the current sources.
pub const BUILD_HINT: &str = "cargo run -p molt-e2e --bin build-versions";

/// The debug moltd binary stamped with `version`, built beforehand (see
/// the module header).
pub fn moltd_binary(version: &str) -> Result<PathBuf> {
    look_up(version, false)
}

/// [`moltd_binary`] with the `fault-injection` feature: it SIGKILLs itself
/// inside the swap when told to (`MOLT_FAULT_KILL_SWAP_OP`, see
/// `daemon/src/update/swap/faults.rs`). Built beforehand too.
pub fn moltd_binary_with_faults(version: &str) -> Result<PathBuf> {
    look_up(version, true)
}

/// The variable that makes a [`moltd_binary_with_faults`] build die before
/// the swap's N-th operation.
pub const KILL_SWAP_OP: &str = "MOLT_FAULT_KILL_SWAP_OP";

/// Builds the debug moltd binary stamped with `version` (with the
/// `fault-injection` feature if `faults`), unless it is built already:
/// for `build-versions`, never for a test.
pub fn build_moltd_binary(version: &str, faults: bool) -> Result<PathBuf> {
    build(version, false, faults)
}

/// The same as an optimized build, for benchmarks (built if needed).
pub fn moltd_release_binary(version: &str) -> Result<PathBuf> {
    build(version, true, false)
}

fn look_up(version: &str, faults: bool) -> Result<PathBuf> {
    let root = repo_root();
    let cached = cached_binary(&root, version, false, faults)?;
    if !cached.is_file() {
        bail!(
            "moltd {version} is not built for the current sources ({} is missing): run \
             `{BUILD_HINT}` (scripts/test runs it before the tests)",
            cached.display()
        );
    }
    Ok(cached)
}

/// Where the build of `version` for the current sources lives.
fn cached_binary(root: &Path, version: &str, release: bool, faults: bool) -> Result<PathBuf> {
    let fingerprint = source_fingerprint(root)?;
    let build_name = if faults {
        format!("{version}+faults")
    } else {
        version.to_owned()
    };
    Ok(target_dir(root, release)
        .join("bins")
        .join(fingerprint)
        .join(build_name)
        .join("moltd"))
}

fn target_dir(root: &Path, release: bool) -> PathBuf {
    root.join("target").join(if release {
        "bench-versions"
    } else {
        "e2e-versions"
    })
}

fn build(version: &str, release: bool, faults: bool) -> Result<PathBuf> {
    let root = repo_root();
    let profile = if release { "release" } else { "debug" };
    let target = target_dir(&root, release);
    std::fs::create_dir_all(&target)?;
    let bins = target.join("bins");
    let fingerprint = source_fingerprint(&root)?;
    let cached = cached_binary(&root, version, release, faults)?;
    if cached.is_file() {
        return Ok(cached);
    }
    // One build at a time: test processes run in parallel and share the
    // target dir.
    let lock = File::create(target.join(".build.lock"))?;
    lock.lock()?;
    if cached.is_file() {
        return Ok(cached);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "-p", "molt-daemon", "--bin", "moltd"])
        .args(release.then_some("--release"))
        .args(
            faults
                .then_some(["--features", "fault-injection"])
                .into_iter()
                .flatten(),
        )
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env("MOLT_VERSION", version)
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!(
            "building moltd {version} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = target.join(profile).join("moltd");
    let dir = cached.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".moltd.tmp");
    std::fs::copy(&built, &tmp)?;
    std::fs::rename(&tmp, &cached)?;
    // Builds of older sources are never used again.
    for entry in std::fs::read_dir(&bins)?.flatten() {
        if entry.file_name() != fingerprint.as_str() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(cached)
}

/// The npm package of [`moltd_binary`]`(version)` named `package`, packed
/// once and kept beside the cached binary.
pub fn packed_moltd(version: &str, package: &str) -> Result<PathBuf> {
    pack_cached(&moltd_binary(version)?, version, package)
}

/// The npm package of [`moltd_binary_with_faults`]`(version)`.
pub fn packed_moltd_with_faults(version: &str, package: &str) -> Result<PathBuf> {
    pack_cached(&moltd_binary_with_faults(version)?, version, package)
}

fn pack_cached(binary: &Path, version: &str, package: &str) -> Result<PathBuf> {
    let dir = binary.parent().expect("cache path has a parent");
    let name = package.trim_start_matches('@').replace('/', "-");
    // The changelog is packed too: another text is another package.
    let notes = Sha256::digest(crate::changelogs::changelog_for(version));
    let cached = dir.join(format!("{name}-{version}-{}.tgz", hex::encode(&notes[..4])));
    if cached.is_file() {
        return Ok(cached);
    }
    // Packed in a private dir and renamed: parallel tests may race here.
    let work = tempfile::tempdir_in(dir)?;
    let tarball = crate::pack_moltd(binary, version, work.path(), package)?;
    std::fs::rename(&tarball, &cached)?;
    Ok(cached)
}

/// Builds and packs every version of [`SUITE`] (as [`crate::DEFAULT_PACKAGE`]),
/// plain and with fault injection, for the current sources; the paths of
/// the packages.
pub fn build_suite() -> Result<Vec<PathBuf>> {
    let mut packages = Vec::new();
    for faults in [false, true] {
        for version in SUITE {
            let binary = build_moltd_binary(version, faults)?;
            packages.push(pack_cached(&binary, version, crate::DEFAULT_PACKAGE)?);
        }
    }
    Ok(packages)
}

/// Hash of everything moltd is built from.
fn source_fingerprint(root: &Path) -> Result<String> {
    let mut files = Vec::new();
    for dir in ["daemon/src", "shared/src"] {
        collect(&root.join(dir), &mut files)?;
    }
    for file in [
        "Cargo.lock",
        "Cargo.toml",
        "daemon/Cargo.toml",
        "shared/Cargo.toml",
        "daemon/build.rs",
    ] {
        files.push(root.join(file));
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(
            file.strip_prefix(root)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        hash.update(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
    }
    Ok(hex::encode(&hash.finalize()[..8]))
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
