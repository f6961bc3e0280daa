#!/usr/bin/env bash
# Build cotlab's images (images/Dockerfile) with buildah: no container daemon needed.
#
#   bash scripts/build-images.sh                    # operator and trainer
#   bash scripts/build-images.sh evaluator          # any of: operator trainer evaluator (or all)
#   bash scripts/build-images.sh --push localhost:5000/cotlab all    # then push them (plain HTTP to localhost)
#
# Images are tagged ${COTLAB_IMAGE_REPO:-ghcr.io/cotlab}/<name>:<version from pyproject.toml>, the names the
# install manifests and the operator's defaults use, and labelled with the git revision.
#
# - Tools: buildah, podman, runc and mmdebstrap from Debian's packages (scripts/install-image-tools.sh), with
#   images/containers.conf (runc; no default ulimits above the machine's hard limits).
# - Base: COTLAB_BASE_IMAGE if set; otherwise the Dockerfile's pinned python:3.11.14-slim-bookworm if it can be
#   pulled; otherwise an equivalent Debian bookworm base with python3.11 made from Debian's packages with
#   mmdebstrap (said on stderr), cached by its package list.
# - Layers are cached (`--layers`), and wheels persist across builds in a build cache mount, so a build after a
#   source change rebuilds only the small package layer.
# - A TLS proxy's CA: the machine's bundle (COTLAB_BUILD_CA, else SSL_CERT_FILE or the Debian bundle) is given
#   to pip as a build secret, never written into an image.
#
# Prints one line per image on stdout: `<ref> <size in bytes> <build seconds>`; progress goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${COTLAB_CACHE:-$HOME/.cache/cotlab}"
push_to=""
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --push) push_to="${2:?--push needs a repository, e.g. localhost:5000/cotlab}"; shift 2 ;;
        all) targets+=(operator trainer evaluator); shift ;;
        operator|trainer|evaluator) targets+=("$1"); shift ;;
        *) echo "build-images: unknown argument $1 (targets: operator trainer evaluator all; --push REPO)" >&2; exit 2 ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(operator trainer)

bash "$root/scripts/install-image-tools.sh"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/images/containers.conf}"

version="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$root/pyproject.toml")"
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git -C "$root" status --porcelain 2>/dev/null)" ]] || revision="$revision-dirty"
repo="${COTLAB_IMAGE_REPO:-ghcr.io/cotlab}"
build_tools="$(cat "$root/images/install-env.sh" "$root/images/requirements.py" | sha256sum | cut -c1-16)"

ca="${COTLAB_BUILD_CA:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
secret=()
[[ -f "$ca" ]] && secret=(--secret "id=ca,src=$ca")

# The Dockerfile's default base, or one made from Debian's packages where it cannot be pulled.
pinned="$(sed -n 's/^ARG BASE_IMAGE=//p' "$root/images/Dockerfile")"
# The essential variant (no apt) with python3.11 and libstdc++ (manylinux wheels link it: numpy, torch, and the
# python slim image has it); docs, man pages and locales left out, licences kept; /usr merged by mmdebstrap's
# hook, as debootstrap does it (the usrmerge package would bring perl: 47 MB).
MMDEBSTRAP_ARGS=(
    --variant=essential --include=python3,python3-venv,ca-certificates,libstdc++6
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    bookworm
)
debian_base() {
    local tag tar
    # Named by what it is made from, so it is made once per machine and again only when that changes.
    tag="localhost/cotlab/base:bookworm-$(printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" | sha256sum | cut -c1-12)"
    if ! buildah inspect --type image "$tag" >/dev/null 2>&1; then
        echo "build-images: making $tag from Debian's packages (mmdebstrap)" >&2
        tar="$(mktemp -d)/base.tar"
        mmdebstrap --quiet "${MMDEBSTRAP_ARGS[@]}" "$tar" >&2
        podman import --quiet --change 'CMD ["python3"]' "$tar" "$tag" >/dev/null
        rm -rf "$(dirname "$tar")"
    fi
    echo "$tag"
}
if [[ -n "${COTLAB_BASE_IMAGE:-}" ]]; then
    base="$COTLAB_BASE_IMAGE"
elif buildah inspect --type image "$pinned" >/dev/null 2>&1 || timeout 60 buildah pull --quiet "$pinned" >/dev/null 2>&1; then
    base="$pinned"
else
    echo "build-images: cannot pull $pinned (no registry reachable?); using an equivalent base from Debian's packages" >&2
    base="$(debian_base)"
fi
echo "build-images: base $base" >&2

for target in "${targets[@]}"; do
    ref="$repo/$target:$version"
    echo "build-images: building $ref" >&2
    previous="$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)"
    start=$SECONDS
    buildah bud --layers --isolation=chroot --network=host --format=oci --quiet \
        --target "$target" \
        --build-arg "BASE_IMAGE=$base" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "BUILD_TOOLS=$build_tools" \
        "${secret[@]}" \
        -f "$root/images/Dockerfile" -t "$ref" "$root" >&2
    # buildah (1.28) reuses a cached LABEL step even when the build arguments in it changed (checked: the
    # revision stayed the first build's), so an image whose layers were all cached is relabelled here.
    labelled="$(podman image inspect --format \
        '{{index .Labels "org.opencontainers.image.revision"}} {{index .Labels "org.opencontainers.image.version"}}' \
        "$ref")"
    if [[ "$labelled" != "$revision $version" ]]; then
        container="$(buildah from --pull-never --quiet "$ref")"
        buildah config --label "org.opencontainers.image.revision=$revision" \
            --label "org.opencontainers.image.version=$version" "$container"
        buildah commit --quiet "$container" "$ref" >/dev/null
        buildah rm "$container" >/dev/null
    fi
    seconds=$((SECONDS - start))
    size="$(podman image inspect --format '{{.Size}}' "$ref")"
    # The image this build replaced under the same name: gigabytes nothing refers to any more. Only it: its
    # untagged parents are the layer cache, which podman rmi removes too without --no-prune. Measured, CI's
    # order at a new commit (this script, then the real node's `--push`): 243 s to the node being up with the
    # pruning (the trainer's layers made and pushed anew), 11 s without. A change of requirements leaves the old
    # dependency layers behind: `podman image prune` reclaims them (and empties the cache).
    if [[ -n "$previous" && "$previous" != "$(podman image inspect --format '{{.Id}}' "$ref")" ]]; then
        podman rmi --no-prune "$previous" >/dev/null 2>&1 || true
    fi
    if [[ -n "$push_to" ]]; then
        echo "build-images: pushing $ref to $push_to/$target:$version" >&2
        # A registry on this machine: plain HTTP, and zstd, which compresses gigabytes several times faster
        # than gzip (containerd 2 and current registries read it).
        local_registry=()
        [[ "$push_to" == localhost:* || "$push_to" == 127.0.0.1:* ]] \
            && local_registry=(--tls-verify=false --compression-format=zstd)
        podman push --quiet "${local_registry[@]}" "$ref" "docker://$push_to/$target:$version" >&2
    fi
    echo "$ref $size $seconds"
done
