#!/usr/bin/env bash
# Build the evaluator image (vLLM and its own torch: about 7 GB of layers, 4 GB of wheels) and smoke-test it the
# way the operator starts its pods, whenever what it is built from changed: images/Dockerfile, the build scripts,
# or the evaluator's requirements (pyproject.toml's `eval` extra and the base dependencies). CI runs this; a
# stamp under the cache records the inputs it last passed with, so an unchanged evaluator costs nothing, and the
# image is removed after the check (this machine's disk is shared with the trainer image and the real node).
#
#   bash scripts/check-evaluator-image.sh           # build and check if the inputs changed
#   COTLAB_FORCE_EVALUATOR=1 bash ...               # build and check anyway
#   COTLAB_KEEP_EVALUATOR=1 bash ...                # keep the image afterwards
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${COTLAB_CACHE:-$HOME/.cache/cotlab}/images"
key="$( (cat "$root/images/Dockerfile" "$root/images/install-env.sh" "$root/images/requirements.py"
         python3 "$root/images/requirements.py" "$root/pyproject.toml" eval) | sha256sum | cut -c1-16)"
stamp="$cache/evaluator-$key.passed"
if [[ -f "$stamp" && -z "${COTLAB_FORCE_EVALUATOR:-}" ]]; then
    echo "check-evaluator-image: unchanged since it passed on $(cat "$stamp") (inputs $key); not rebuilt" >&2
    exit 0
fi

start=$SECONDS
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/images/containers.conf}"
before="$(podman images --all --quiet --no-trunc 2>/dev/null | sort -u)"
read -r ref size seconds < <(bash "$root/scripts/build-images.sh" evaluator | tail -n 1)
# As the operator starts an evaluate pod: uid 65532, read-only root, no capabilities, scratch on tmpfs.
run=(podman run --rm --network=none --read-only --user=65532:65532 --cap-drop=ALL
     --security-opt=no-new-privileges --tmpfs=/tmp --tmpfs=/cache)
"${run[@]}" --entrypoint=python "$ref" -c \
    "import vllm, cotlab.trainer.evaluate.stage, cotlab.trainer.curate.stage; print('vllm', vllm.__version__)" >&2
"${run[@]}" "$ref" --help >/dev/null
"${run[@]}" --entrypoint=python "$ref" -c "import os; assert os.getcwd() == '/' and os.getuid() == 65532" >&2

mkdir -p "$cache"
date -u +%Y-%m-%dT%H:%M:%SZ > "$stamp"
echo "check-evaluator-image: $ref ($((size / 1000000)) MB, built in ${seconds}s, checked in $((SECONDS - start))s)" >&2
if [[ -z "${COTLAB_KEEP_EVALUATOR:-}" ]]; then
    # The image and the intermediate images its build added; the trainer's build cache stays.
    mapfile -t added < <(comm -13 <(echo "$before") <(podman images --all --quiet --no-trunc | sort -u))
    podman rmi --force "${added[@]}" >/dev/null
fi
