#!/usr/bin/env bash
# mypy --strict over the cotlab packages. The editable install maps folders to `cotlab.*` through an import
# hook mypy cannot follow, so mypy reads a symlink tree with the installed layout instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/cotlab"
for pkg in api operator trainer cli; do ln -s "$root/$pkg" "$tree/cotlab/$pkg"; done
cd "$tree"
# The cache outlives the tree (and the checkout): mypy records module paths relative to the tree and, for a file
# whose mtime changed (every fresh clone), compares its content hash, so only what changed is checked again
# (54 s cold, mostly the third-party packages; seconds warm).
cache="${MYPY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cotlab/mypy}"
mypy --config-file "$root/pyproject.toml" --cache-dir "$cache" --namespace-packages \
    -p cotlab.api -p cotlab.cli -p cotlab.trainer -p cotlab.operator "$@"
