#!/usr/bin/env bash
# Install the daemonless container tools the image build and the image tests use, from Debian's packages:
# buildah (builds), podman (runs the smoke tests), runc (the OCI runtime; crun refuses hybrid cgroup v1),
# mmdebstrap (a base image from Debian's packages where no registry can be reached), skopeo (copies images
# between storage and registries). Does nothing when they are all there.
set -euo pipefail

tools=(buildah podman runc mmdebstrap skopeo)
# (With recommends: podman brings conmon, catatonit and the CNI plugins.)
missing=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

command -v apt-get >/dev/null || { echo "install-image-tools: need ${missing[*]} (Debian/Ubuntu: apt-get)" >&2; exit 1; }
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "install-image-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2 \
    || { "${sudo[@]}" apt-get update -q >&2 && "${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2; }
