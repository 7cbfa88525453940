#!/usr/bin/env bash
# Builds the Debian bookworm root that the systemd tests boot with
# systemd-nspawn (tests/tests/systemd.rs, fixture tests/src/systemd.rs):
# systemd 252 as PID 1, dbus, and Debian's node and npm, so that moltd is
# installed in it by a real `npm i -g` and run by the shipped units.
#
# Needs root (debootstrap, and systemd-nspawn in the tests). Not root: says
# that the systemd tests will be skipped, and exits 0.
#
# Cached like the other test tools: the root is built into a temporary
# directory, stamped with the hash of this script (the recipe) and renamed
# into place, so a killed build never leaves half a root; while the stamp
# matches, nothing is done. A failed build leaves its reason in
# tests/tools/systemd-root.failed (the tests skip and print it) and exits 1.
#
# Prints `systemd_root=<dir>` on stdout once the root is ready; everything
# else goes to stderr.
set -euo pipefail

script="$(realpath "${BASH_SOURCE[0]}")"
repo_root="$(cd "$(dirname "$script")/.." && pwd)"
tools_dir="$repo_root/tests/tools"
root="$tools_dir/systemd-root"
failed="$tools_dir/systemd-root.failed"
# Keep in sync with tests/src/systemd.rs (STAMP, recipe_hash).
stamp_name=".molt-root-stamp"
mirror="http://deb.debian.org/debian"
# The base that debootstrap installs, then what apt adds (see below).
base="systemd,systemd-sysv,dbus,ca-certificates"
extra="nodejs npm"

log() { printf 'systemd-root: %s\n' "$*" >&2; }

if [[ $EUID -ne 0 ]]; then
    log "not root: the systemd tests will be skipped (building the Debian root and booting it with systemd-nspawn need root)"
    exit 0
fi

# Serialize concurrent runs; the lock file is outside the root so that the
# rename below never races it.
exec 9>"$tools_dir/.systemd-root.lock"
flock 9

# Records why the build failed, for the tests to print when they skip.
fail() {
    {
        printf 'building the Debian root failed: %s\n' "$1"
        [[ -n "${build_log:-}" ]] && tail -n 30 "$build_log" 2>/dev/null
        [[ -n "${tmp:-}" ]] && tail -n 30 "$tmp/debootstrap/debootstrap.log" 2>/dev/null
        true
    } >"$failed"
    log "error: $1 (details in $failed); the systemd tests will be skipped"
    exit 1
}

# The tests boot the root with systemd-nspawn: installed even when the root
# is up to date.
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if (( ${#need[@]} )); then
    log "installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || fail "apt-get update exited $?"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        fail "apt-get install ${need[*]} exited $?"
fi

want="$(sha256sum "$script" | cut -d' ' -f1)"
if [[ -f "$root/$stamp_name" && "$(cat "$root/$stamp_name")" == "$want" ]]; then
    log "up to date ($root)"
    printf 'systemd_root=%s\n' "$root"
    exit 0
fi

# Removes a root directory that may still have file systems mounted in it
# (debootstrap mounts /proc and /sys in its target; a killed build leaves
# them), without ever leaving the directory's own file system.
remove_tree() {
    local dir="$1"
    [[ -e "$dir" ]] || return 0
    { findmnt -rn -o TARGET | grep -F "$dir/" || true; } | sort -r | while read -r mnt; do
        umount -l "$mnt" || true
    done
    rm -rf --one-file-system "$dir"
}

for leftover in "$tools_dir"/systemd-root.tmp.* "$tools_dir"/systemd-root.old.*; do
    [[ -e "$leftover" ]] && remove_tree "$leftover"
done

tmp="$(mktemp -d "$tools_dir/systemd-root.tmp.XXXXXX")"
# The root of the container's file system: mktemp makes it 0700.
chmod 0755 "$tmp"
build_log="$tmp.log"
cleanup() { remove_tree "$tmp"; rm -f "$build_log"; }
trap cleanup EXIT

start=$SECONDS
log "building $root (debootstrap minbase bookworm with $base, then $extra)"
# Two steps, because debootstrap resolves only real packages: npm's
# dependencies name virtual ones (node-has, node-cssesc, ...) that other
# packages provide, so `--include=...,nodejs,npm` fails to configure npm.
# debootstrap lays down the base with systemd; apt, which does resolve
# them, adds nodejs and npm. Both run dpkg with force-unsafe-io (no fsync
# per file: this root is rebuilt, never recovered), which cuts the build
# from ~170 s to 80-120 s here; the setting is removed again at the end.
debootstrap --foreign --variant=minbase --include="$base" bookworm "$tmp" "$mirror" >"$build_log" 2>&1 ||
    fail "debootstrap (download and unpack) exited $?"
unsafe_io="$tmp/etc/dpkg/dpkg.cfg.d/molt-unsafe-io"
mkdir -p "$(dirname "$unsafe_io")"
echo force-unsafe-io >"$unsafe_io"
chroot "$tmp" /debootstrap/debootstrap --second-stage >>"$build_log" 2>&1 ||
    fail "debootstrap --second-stage exited $?"
bootstrap_secs=$((SECONDS - start))
{
    chroot "$tmp" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive chroot "$tmp" apt-get install -y -qq --no-install-recommends $extra
} >>"$build_log" 2>&1 || fail "apt-get install $extra exited $?"
rm "$unsafe_io"
node_secs=$((SECONDS - start - bootstrap_secs))

# What every test needs, done once here: the service account of the shipped
# moltd.service and the npm prefix it installs into (docs/systemd.md).
chroot "$tmp" useradd --system --home-dir /var/lib/molt --shell /usr/sbin/nologin molt >>"$build_log" 2>&1 ||
    fail "useradd molt"
install -d -o "$(chroot "$tmp" id -u molt)" -g "$(chroot "$tmp" id -g molt)" -m 0755 "$tmp/opt/molt"
# Nobody logs in on a machine's console: no getty (one process less per
# boot, no login prompt in the console the tests capture).
chroot "$tmp" systemctl mask console-getty.service getty@.service >>"$build_log" 2>&1 ||
    fail "masking the gettys"
# apt's package cache and lists (~240 MB) are of no use to the tests.
chroot "$tmp" apt-get clean
rm -rf "$tmp"/var/lib/apt/lists/*

printf '%s\n' "$want" >"$tmp/$stamp_name"
if [[ -e "$root" ]]; then
    old="$(mktemp -u "$tools_dir/systemd-root.old.XXXXXX")"
    mv "$root" "$old"
    mv "$tmp" "$root"
    remove_tree "$old"
else
    mv "$tmp" "$root"
fi
rm -f "$failed"
log "built $root in $((SECONDS - start))s (debootstrap ${bootstrap_secs}s, nodejs and npm ${node_secs}s, $(du -sh "$root" | cut -f1))"
printf 'systemd_root=%s\n' "$root"
