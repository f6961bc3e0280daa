"""Benchmark cotlab's generation path against one generate call per prompt, on a random-weight small model.

    python bench/generation.py                         # GPU: vLLM, needs vllm and a GPU (exit 2 otherwise)
    python bench/generation.py --engine transformers   # CPU: the transformers engine with a tiny model

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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the random model builder is shared with the tests

from cotlab.api.evalrun import Engine as EngineSpec  # noqa: E402
from cotlab.api.models import ModelSource, Sampling  # noqa: E402
from cotlab.trainer.generation import Completion, Engine, SampleRequest, generate_all  # noqa: E402
from tests.workload.tiny_model import build_tiny_model  # noqa: E402

DEFAULTS = {  # engine: (prompts, samples, max_tokens, hidden_size, layers, heads)
    "vllm": (64, 16, 256, 512, 4, 8),
    "transformers": (8, 4, 32, 64, 2, 4),
}


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

    batched = TransformersEngine.load(
        source, EngineSpec(name="transformers", dtype="float32", batch_size=args.batch_size)
    )
    # batchSize = samples: exactly one generate call per prompt, all of its samples together.
    per_prompt = TransformersEngine(batched.model, batched.tokenizer, batch_size=args.samples)
    return batched, per_prompt, "one model.generate per prompt (its samples batched)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(DEFAULTS), default="vllm")
    parser.add_argument("--prompts", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--batch-size", type=int, help="transformers: sequences per batch (default: all)")
    args = parser.parse_args()
    prompts_n, samples, max_tokens, hidden, layers, heads = DEFAULTS[args.engine]
    args.prompts = args.prompts or prompts_n
    args.samples = args.samples or samples
    args.max_tokens = args.max_tokens or max_tokens
    args.batch_size = args.batch_size or args.prompts * args.samples
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=hidden, layers=layers, heads=heads)
        try:
            cotlab_engine, baseline_engine, baseline_name = _engines(args, model_dir)
        except Unavailable as exc:
            print(f"bench/generation.py: {exc}", file=sys.stderr)
            return 2
        sampling = Sampling(temperature=1.0, top_p=1.0, samples=args.samples, max_tokens=args.max_tokens, seed=0)
        # Prompts of different lengths, as benchmark problems are: padding and scheduling costs are real.
        prompts = [f"Problem {i}: " + "compute the sum of the digits " * (1 + i % 5) for i in range(args.prompts)]
        requests = [SampleRequest(p, args.samples, i * args.samples) for i, p in enumerate(prompts)]
        generate_all(cotlab_engine, requests[:1], sampling.model_copy(update={"max_tokens": 4}))  # warm-up

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


if __name__ == "__main__":
    sys.exit(main())
