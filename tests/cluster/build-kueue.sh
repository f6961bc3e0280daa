#!/usr/bin/env bash
# Build Kueue's manager (v0.17.0, the version on the Go module proxy) for the queueing tests, once, and copy its
# CRDs beside it:
#
#   ${COTLAB_CACHE:-$HOME/.cache/cotlab}/kueue/v0.17.0/{bin/kueue,crds/*.yaml}
#
# `go install module@version` builds from Kueue's own go.mod and go.sum (checked against the checksum database),
# so the version pins everything. Cold: about 8 minutes on 2 cores (less when the control plane's Go build cache
# is warm, as it shares most dependencies); prints the directory as the last line of stdout.
set -euo pipefail

KUEUE_VERSION=v0.17.0
dest="${COTLAB_CACHE:-$HOME/.cache/cotlab}/kueue/${KUEUE_VERSION}"
if [[ -x "$dest/bin/kueue" && -f "$dest/crds/.complete" ]]; then
    echo "$dest"
    exit 0
fi
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if [[ ! -x "$dest/bin/kueue" ]]; then
    echo "build-kueue: building sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION" >&2
    start=$SECONDS
    GOBIN="$dest/bin.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION" >&2
    mv "$dest/bin.tmp" "$dest/bin"
    echo "build-kueue: built in $((SECONDS - start))s" >&2
fi
module="$(go env GOMODCACHE)/sigs.k8s.io/kueue@${KUEUE_VERSION}"
rm -rf "$dest/crds"
mkdir -p "$dest/crds"
cp "$module"/config/components/crd/bases/*.yaml "$dest/crds/"
chmod -R u+w "$dest/crds"
touch "$dest/crds/.complete"
echo "$dest"
