#!/usr/bin/env bash
# Packs a prebuilt moltd binary into the npm package that ships it.
#
#   scripts/pack-moltd.sh <binary> <version> <out-dir> [package-name] [changelog]
#
# Fills assets/npm/package.json.template (name, version), copies <binary> to
# bin/moltd (mode 0755) and <changelog> to CHANGELOG.md at the package root
# in a staging directory, and runs `npm pack` into <out-dir>. Prints the
# tarball's absolute path on stdout (only that). package-name defaults to
# @molt/moltd, changelog to the repository's CHANGELOG.md: operators decide
# on updates from it, and moltd shows its entries after an update.
set -euo pipefail

usage() { echo "usage: $0 <binary> <version> <out-dir> [package-name] [changelog]" >&2; exit 2; }
die() { echo "pack-moltd: error: $*" >&2; exit 1; }

[[ $# -ge 3 && $# -le 5 ]] || usage
binary="$1"
version="$2"
out_dir="$3"
name="${4:-@molt/moltd}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
changelog="${5:-$repo_root/CHANGELOG.md}"
template="$repo_root/assets/npm/package.json.template"

[[ -f "$binary" && -x "$binary" ]] || die "not an executable file: $binary"
[[ -f "$changelog" ]] || die "not a file: $changelog (the changelog to ship)"
# Semver 2.0 (no leading zeros check; npm rejects those itself).
semver='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'
[[ "$version" =~ $semver ]] || die "not a semver version: $version"
# npm package name: optional @scope/, lowercase, url-safe, at most 214 chars.
name_re='^(@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*$'
[[ "$name" =~ $name_re && ${#name} -le 214 ]] || die "not a valid npm package name: $name"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"

mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

stage="$(mktemp -d "${TMPDIR:-/tmp}/pack-moltd.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

mkdir "$stage/bin"
# Name and version were validated above: neither contains '|', '&' or '\'.
sed -e "s|__MOLTD_PACKAGE_NAME__|$name|g" -e "s|__MOLTD_VERSION__|$version|g" \
    "$template" >"$stage/package.json"
cp "$binary" "$stage/bin/moltd"
chmod 0755 "$stage/bin/moltd"
cp "$changelog" "$stage/CHANGELOG.md"

# npm pack prints notices on stderr and the tarball's file name as the last
# stdout line.
tarball="$(cd "$stage" && npm pack --ignore-scripts --pack-destination "$out_dir" --loglevel=error | tail -n 1)"
[[ -n "$tarball" && -f "$out_dir/$tarball" ]] || die "npm pack did not produce a tarball in $out_dir"
printf '%s\n' "$out_dir/$tarball"
