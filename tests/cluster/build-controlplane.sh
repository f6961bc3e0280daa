#!/usr/bin/env bash
# Build the Kubernetes control plane the cluster tests run against (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler) from the Go module
# proxy, once, into a cache directory keyed by the Kubernetes version and a hash
# of the wrapper module's go.mod + go.sum:
#
#   ${COTLAB_CACHE:-$HOME/.cache/cotlab}/controlplane/v1.37.2-<hash>/bin/
#
# When the binaries are already there this prints the bin directory and exits
# at once. Otherwise it builds them (20-40 minutes on 2 cores when the Go build
# cache is cold; GOCACHE and GOMODCACHE keep their defaults so CI can cache
# them) and prints the bin directory as the last line of stdout. All progress
# goes to stderr.
#
# Environment:
#   COTLAB_CACHE          cache root (default $HOME/.cache/cotlab)
#   COTLAB_BUILD_JOBS     go build -p (default: number of CPUs)
#   COTLAB_BUILD_TIMING=1 run the build under /usr/bin/time -v (peak memory)
set -euo pipefail

BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# K8S_VERSION, K8S_BUILD_DATE and k8s_ldflags, shared with build-node.sh.
source "$here/k8s-version.sh"
module="$here/controlplane"
hash="$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)"
dest="${COTLAB_CACHE:-$HOME/.cache/cotlab}/controlplane/${K8S_VERSION}-${hash}"

have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$dest/bin/$b" ]] || return 1
    done
}

if have_all; then
    echo "$dest/bin"
    exit 0
fi

mkdir -p "$dest"
# Two concurrent callers (CI step and a test session) must not both build.
exec 9>"$dest/.lock"
flock 9
if have_all; then
    echo "$dest/bin"
    exit 0
fi

command -v go >/dev/null || { echo "build-controlplane: go is not installed" >&2; exit 1; }

ldflags="$(k8s_ldflags)"
ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=module-proxy"

staging="$dest/bin.tmp.$$"
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT

jobs="${COTLAB_BUILD_JOBS:-$(nproc)}"
echo "build-controlplane: building ${BINARIES[*]} ($K8S_VERSION) with -p $jobs into $dest/bin" >&2
start=$SECONDS
build=(go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$staging/")
for b in "${BINARIES[@]}"; do
    build+=("./cmd/$b")
done
if [[ "${COTLAB_BUILD_TIMING:-}" == 1 && -x /usr/bin/time ]]; then
    build=(/usr/bin/time -v "${build[@]}")
fi
# One `go build` for all four so packages shared between them compile once.
(cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "${build[@]}" >&2)

for b in "${BINARIES[@]}"; do
    [[ -x "$staging/$b" ]] || { echo "build-controlplane: $b was not built" >&2; exit 1; }
done
rm -rf "$dest/bin"
mv "$staging" "$dest/bin"
echo "build-controlplane: built in $((SECONDS - start))s" >&2
echo "$dest/bin"
