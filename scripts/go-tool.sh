#!/usr/bin/env bash
# Build one Go program from the module proxy, once, and print its path on the last line of stdout:
#
#   bash scripts/go-tool.sh github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
#   -> ${COTLAB_CACHE:-$HOME/.cache/cotlab}/tools/actionlint-v1.7.12/actionlint
#
# `go install module/cmd@version` builds from the module's own go.mod and go.sum (checked against the checksum
# database), so the version pins everything; nothing is downloaded as a release binary. Progress goes to stderr.
# Extra arguments are passed to `go install` (e.g. -tags).
set -euo pipefail

target="${1:?usage: go-tool.sh MODULE/CMD@VERSION [go install flags...]}"
shift
package="${target%@*}"
version="${target##*@}"
name="${package##*/}"
dest="${COTLAB_CACHE:-$HOME/.cache/cotlab}/tools/${name}-${version}"

if [[ -x "$dest/$name" ]]; then
    echo "$dest/$name"
    exit 0
fi
command -v go >/dev/null || { echo "go-tool: go is not installed" >&2; exit 1; }
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if [[ ! -x "$dest/$name" ]]; then
    echo "go-tool: building $target" >&2
    start=$SECONDS
    rm -rf "$dest/bin.tmp"
    GOBIN="$dest/bin.tmp" CGO_ENABLED="${CGO_ENABLED:-0}" go install -trimpath -ldflags "-s -w" "$@" "$target" >&2
    mv "$dest/bin.tmp/$name" "$dest/$name"
    rm -rf "$dest/bin.tmp"
    echo "go-tool: built $name in $((SECONDS - start))s" >&2
fi
echo "$dest/$name"
