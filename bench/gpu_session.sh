#!/usr/bin/env bash
# Every fine-tuning measurement issue 25 asks of a lent GPU, in one run sized for its 15 minutes of device time
# (machine start included): the MFU ablations of the FineTuneRun path, cotlab against TRL, the study's model
# class. Each step has its own time limit and appends its JSON to $OUT/figures.jsonl as soon as it ends, so a
# lease that runs out still brings back what was measured; stderr of each goes to $OUT/<step>.log.
#
#   bash ../shared/gpu/wheels.sh .whl                                  # here, once: what the machine lacks
#   pip download --no-deps -d .whl liger-kernel==0.8.5                 # here: TRL's best setting, 0.9 MB
#   run(command="bash bench/gpu_session.sh mfu study", carry=[".whl"], timeout_s=600)   # then: trl generation
#
# Groups (arguments; all four without any): mfu, trl, study, generation. One command may run 10 minutes at most, so the
# groups go in two commands on the same warm machine.
# Order: what the "Done means" needs first. Times are estimates for an H200 (the 0.5B steps ~30 s each
# with start-up; TRL's three runs ~2 min); nothing here has run on a GPU yet.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
mkdir -p /tmp/site/cotlab && for p in api operator trainer cli; do ln -sfn "$PWD/$p" /tmp/site/cotlab/$p; done
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 >"$out/utilisation.csv" &
sampler=$!

step() {  # step NAME SECONDS ARGS...: one measurement, its last stdout line kept when it is JSON
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout -s ABRT "$limit" python3 -X faulthandler "$@" >"$out/$name.out" 2>"$out/$name.log"
  local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - started))}" >>"$out/steps.jsonl"
  tail -n 1 "$out/$name.out" | grep '^{' | sed "s/^{/{\"step\": \"$name\", /" >>"$out/figures.jsonl"
}

want() { [ -z "$groups" ] || [[ " $groups " == *" $1 "* ]]; }
groups="$*"
mfu=bench/finetune_mfu.py
if want mfu; then
# The FineTuneRun path at 8k, one change at a time (issue 25's ablation table), then where the time goes.
step before 90 $mfu --batch padded --loss model --checkpointing on --optimizer foreach
step token-loss 90 $mfu --batch padded --loss token --checkpointing on --optimizer foreach
step flat 90 $mfu --batch flat --loss token --checkpointing on --optimizer foreach
step flat-no-ckpt 90 $mfu --batch flat --loss token --checkpointing off --optimizer foreach
step fused-adamw 90 $mfu --batch flat --loss token --checkpointing off
# torch.compile builds code at run time: it needs gcc or clang (and Python's headers) there, else it fails alone.
step compile 150 $mfu --batch flat --loss token --checkpointing off --compile
# A larger token budget per step at 8k per sequence: four 8,192-token traces in one 32k row (~66 GiB).
step budget-32k 120 $mfu --batch flat --seq 32768 --examples 4 --checkpointing off
step profile 120 $mfu --batch flat --checkpointing off --profile
fi
if want trl; then
# cotlab against TRL's defaults and its best (padding-free, Liger if it travelled), the same data and steps.
step trl 400 bench/finetune_vs_trl.py --gpu
fi
if want study; then
# The study's model class at 16k: full 7B (half its depth: fp32 weights, gradients and AdamW state of all 28
# layers take 137 GB) and LoRA 32B whole (its frozen base in bf16, 66 GB: model.base_dtype).
step 7b-full 150 $mfu --shape 7b --seq 16384 --layers 14 --steps 3 --warmup 1 --checkpointing auto
step 32b-lora 200 $mfu --shape 32b --method lora --seq 16384 --steps 3 --warmup 1 --checkpointing auto
fi

if want generation; then
# The transformers engine on the GPU: 64 prompts x 8 samples x 1,024 tokens against model.generate per prompt.
step generation 240 bench/generation.py --engine transformers --gpu
fi

kill "$sampler" 2>/dev/null
cat "$out/steps.jsonl" "$out/figures.jsonl"
