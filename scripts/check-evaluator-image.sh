#!/usr/bin/env bash
# Build the evaluator image (vLLM and its own torch: about 7 GB of layers, 4 GB of wheels), smoke-test it the way
# the operator starts its pods, and record the check in images/evaluator-check.json. Too big for every CI run, it
# is run by hand whenever what it is built from changes (images/Dockerfile, the build scripts, the `eval` extra's
# requirements): the record holds the digest of those inputs, and tests/unit/test_images.py fails while the tree's
# digest differs from the recorded one. Commit the record with the change.
#
#   bash scripts/check-evaluator-image.sh            # build, check, record, remove the image
#   COTLAB_KEEP_EVALUATOR=1 bash ...                 # keep the image afterwards
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
record="$root/images/evaluator-check.json"
inputs="$(python3 "$root/images/requirements.py" "$root/pyproject.toml" --evaluator-inputs)"

start=$SECONDS
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/images/containers.conf}"
before="$(podman images --all --quiet --no-trunc 2>/dev/null | sort -u)"
read -r ref size seconds < <(bash "$root/scripts/build-images.sh" evaluator | tail -n 1)
# As the operator starts an evaluate pod: uid 65532, read-only root, no capabilities, scratch on tmpfs.
run=(podman run --rm --network=none --read-only --user=65532:65532 --cap-drop=ALL
     --security-opt=no-new-privileges --tmpfs=/tmp --tmpfs=/cache)
versions="$("${run[@]}" --entrypoint=python "$ref" -c \
    "import vllm, torch, cotlab.trainer.evaluate.stage, cotlab.trainer.curate.stage; print(vllm.__version__, torch.__version__)")"
"${run[@]}" "$ref" --help >/dev/null
"${run[@]}" --entrypoint=python "$ref" -c "import os; assert os.getcwd() == '/' and os.getuid() == 65532"
read -r vllm torch <<<"$versions"

python3 - "$record" <<PY
import json, sys
json.dump({
    "inputs": "$inputs",
    "checked": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "revision": "$(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet HEAD -- images pyproject.toml || echo +changes)",
    "image": "$ref",
    "bytes": $size,
    "buildSeconds": $seconds,
    "vllm": "$vllm",
    "torch": "$torch",
    "smokeTest": ["import vllm, torch and the evaluate and curate stages", "--help exits 0", "cwd / as uid 65532"],
}, open(sys.argv[1], "w"), indent=2)
open(sys.argv[1], "a").write("\n")
PY
echo "check-evaluator-image: $ref ($((size / 1000000)) MB, built in ${seconds}s, checked in $((SECONDS - start))s); recorded in $record" >&2
if [[ -z "${COTLAB_KEEP_EVALUATOR:-}" ]]; then
    # The image and the intermediate images its build added; the trainer's build cache stays.
    mapfile -t added < <(comm -13 <(echo "$before") <(podman images --all --quiet --no-trunc | sort -u))
    podman rmi --force "${added[@]}" >/dev/null
fi
