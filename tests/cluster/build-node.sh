#!/usr/bin/env bash
# Build what the real node of the cluster tests runs, once, into one cached folder, and print it as the last line
# of stdout:
#
#   ${COTLAB_CACHE:-$HOME/.cache/cotlab}/node/v1.37.2-<hash>/bin/
#     kubelet, kube-proxy     from tests/cluster/node: k8s.io/kubernetes v1.37.2, the control plane's version
#     containerd, containerd-shim-runc-v2   containerd v2 (the 1.37 kubelet asks the runtime for its cgroup
#                             driver, a CRI call Debian's containerd 1.6 does not have)
#     coredns                 the cluster DNS (pods resolve <job>-0.<service>.<ns>.svc through it)
#     registry                distribution's registry: images are pushed to it and pulled from it
#     pause                   the pod sandbox's process, compiled from k8s.io/kubernetes's build/pause/linux/pause.c
# Each Go program comes from the module proxy (scripts/go-tool.sh caches them by version). From Debian's
# packages (installed when missing): runc, the CNI plugins (bridge, host-local, loopback, portmap), iptables and
# conntrack (kube-proxy), gcc's static libc (pause).
set -euo pipefail

CONTAINERD_VERSION=v2.4.2
COREDNS_VERSION=v1.15.0
REGISTRY_VERSION=v3.1.2
BINARIES=(kubelet kube-proxy containerd containerd-shim-runc-v2 coredns registry pause)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/k8s-version.sh"
module="$here/node"
hash="$( (cat "$module/go.mod" "$module/go.sum"; echo "$CONTAINERD_VERSION $COREDNS_VERSION $REGISTRY_VERSION") \
    | sha256sum | cut -c1-12)"
dest="${COTLAB_CACHE:-$HOME/.cache/cotlab}/node/${K8S_VERSION}-${hash}"

have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$dest/bin/$b" ]] || return 1
    done
}

packages() {
    local missing=() sudo=()
    [[ -x /usr/sbin/runc || -x /usr/bin/runc ]] || missing+=(runc)
    [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v conntrack >/dev/null || missing+=(conntrack)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "build-node: installing ${missing[*]} (Debian)" >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2 \
        || { "${sudo[@]}" apt-get update -q >&2 \
             && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2; }
}

packages
if have_all; then
    echo "$dest/bin"
    exit 0
fi
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if have_all; then
    echo "$dest/bin"
    exit 0
fi
command -v go >/dev/null || { echo "build-node: go is not installed" >&2; exit 1; }

staging="$dest/bin.tmp.$$"
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT
start=$SECONDS

echo "build-node: building kubelet and kube-proxy ($K8S_VERSION)" >&2
(cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags "$(k8s_ldflags)" -o "$staging/" ./cmd/kubelet ./cmd/kube-proxy >&2)

tool() {  # tool MODULE/CMD@VERSION: build with scripts/go-tool.sh, link into the staging folder
    local path
    path="$(bash "$root/scripts/go-tool.sh" "$@" | tail -n 1)"
    ln -sf "$path" "$staging/$(basename "$path")"
}
tool "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION"
tool "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
tool "github.com/coredns/coredns@$COREDNS_VERSION"
tool "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"

echo "build-node: compiling pause" >&2
pause_src="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
[[ -f "$pause_src" ]] || (cd "$module" && go mod download k8s.io/kubernetes >&2)
gcc -Os -static -Wall -Werror -DVERSION="$K8S_VERSION" -o "$staging/pause" "$pause_src" >&2
strip "$staging/pause"

rm -rf "$dest/bin"
mv "$staging" "$dest/bin"
trap - EXIT
echo "build-node: built in $((SECONDS - start))s" >&2
echo "$dest/bin"
