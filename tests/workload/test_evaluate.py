"""The evaluate stage end to end: scripted engines for exact scores and resume, the tiny model for the real path."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cotlab.api.evalrun import BenchmarkScore, EvalRunSpec
from cotlab.api.models import ModelSource
from cotlab.api.podcontract import decode_summary, parse_marker
from cotlab.trainer import entrypoint
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError
from cotlab.trainer.entrypoint import main
from cotlab.trainer.evaluate.stage import run_evaluate
from cotlab.trainer.generation import SampleRequest
from cotlab.trainer.generation.vllm import VllmEngine

from .conftest import PROBLEMS, SCRIPTED_MODEL, make_pod, make_spec, write_benchmark
from .fake_engine import FakeSamplingParams, Killed, Scripted, ScriptedBatchEngine, ScriptedLLM

pytestmark = pytest.mark.workload

REPO = Path(__file__).resolve().parents[2]

BOX = "so the answer is \\boxed{{{}}}"
SCRIPT = {
    # p1 (gold 18): 4/4 correct.
    "How many eggs does Janet sell?": [Scripted(BOX.format("18"))] * 4,
    # p2 (gold 7): 2/4; the vote ties 2-2 between 5 and 7: the tied classes share the credit, maj 1/2.
    "What is 3 + 4?": [Scripted(BOX.format(a)) for a in ("5", "7", "7", "5")],
    # p3 (gold 12): 0/4, sample 1 has no answer; 11 wins the vote 2-1.
    "What is 3 * 4?": [
        Scripted(BOX.format("11")),
        Scripted("I am not sure."),
        Scripted(BOX.format("13")),
        Scripted(BOX.format("11")),
    ],
    # p4 (gold \frac{1}{2}): 2/4, samples 1 and 3 truncated (16 tokens) without a finished box;
    # \dfrac{1}{2} and \frac{1}{2} are one group for the vote (2 votes): maj right.
    "What is 1 / 2 as a fraction?": [
        Scripted(BOX.format("\\dfrac{1}{2}")),
        Scripted("Let me think \\boxed{\\frac{1}{", "length", 16),
        Scripted(BOX.format("\\frac{1}{2}")),
        Scripted("Let me think step", "length", 16),
    ],
    # p5 (gold 100): 1/4; 99 and 099 are one group (3 votes): maj wrong.
    "What is 10 squared?": [Scripted(BOX.format(a)) for a in ("99", "100", "099", "99")],
}

# Worked out by hand from SCRIPT (per-problem scores p1..p5; stderr = sd(ddof=1) / sqrt(5)):
#   pass@1 per problem 1, 1/2, 0, 1/2, 1/4 -> mean 2.25/5 = 0.45;
#          squared deviations .3025 + .0025 + .2025 + .0025 + .04 = .55 -> sqrt(.55/4/5) = sqrt(.0275)
#   pass@2 = 1 - C(4-c, 2)/C(4, 2): c=4 -> 1, c=2 -> 5/6, c=0 -> 0, c=1 -> 1/2 -> mean (19/6)/5 = 19/30;
#          deviations (11, 6, -19, 6, -4)/30, squares sum 570/900 -> sqrt(570/900/4/5) = sqrt(19/600)
#   pass@4 = any correct: 1, 1, 0, 1, 1 -> 0.8; squares .04*4 + .64 = .8 -> sqrt(.8/20) = 0.2
#   maj@4: 1, 1/2, 0, 1, 0 -> 0.5; squares .25*4 + 0 = 1 -> sqrt(1/20) = sqrt(.05)
#   no answer: p3 #1, p4 #1, p4 #3 -> 3/20; truncated: p4 #1, #3 -> 2/20
#   tokens: 18 samples x 10 + 2 x 16 = 212 -> 212/20 = 10.6
EXPECTED = {
    "problems": 5,
    "samplesPerProblem": 4,
    "metrics": {
        "pass@1": {"value": 0.45, "stderr": math.sqrt(0.0275)},
        "pass@2": {"value": 19 / 30, "stderr": math.sqrt(19 / 600)},
        "pass@4": {"value": 0.8, "stderr": 0.2},
        "maj@4": {"value": 0.5, "stderr": math.sqrt(0.05)},
    },
    "meanOutputTokens": 10.6,
    "truncationRate": 0.1,
    "noAnswerRate": 0.15,
    "graderTimeouts": 0,
    # sha256 over [id, problem, answer, answer kind] per problem, compact JSON: pins what was scored.
    "problemsDigest": "sha256:"
    + hashlib.sha256(
        json.dumps([[p["id"], p["problem"], p["answer"], "latex"] for p in PROBLEMS], separators=(",", ":")).encode()
    ).hexdigest(),
}


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys, so pytest.approx can compare them."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}" if prefix else key).items()}


def assert_scores(got: dict[str, Any], want: dict[str, Any]) -> None:
    got_flat, want_flat = flat(got), flat(want)
    numbers = {k for k, v in want_flat.items() if isinstance(v, int | float)}
    assert {k: got_flat.get(k) for k in numbers} == pytest.approx(
        {k: want_flat[k] for k in numbers}, rel=1e-12, abs=1e-12
    )
    assert {k: v for k, v in got_flat.items() if k not in numbers} == {
        k: v for k, v in want_flat.items() if k not in numbers
    }


def vllm_loader(llm: ScriptedLLM, *, flush_samples: int = 3) -> Any:
    return lambda spec, source: VllmEngine(llm, params_factory=FakeSamplingParams, flush_samples=flush_samples)


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{") and line.endswith("}")]


def test_scripted_vllm_path_scores_match_hand_computation(tmp_path: Path, tokenizer: Any) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    llm = ScriptedLLM(SCRIPT, tokenizer)
    summary = run_evaluate(make_pod(make_spec([bench]), tmp_path / "out"), loader=vllm_loader(llm))

    assert_scores(summary["scores"], {"fixture": EXPECTED})
    record = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert_scores(record.pop("scores"), {"fixture": EXPECTED})
    # Beside the scores, all they were computed with: the model by the digest of its files (sha256 over each file's
    # sha256 and path), the engine as it ran, the prompt, the sampling, the metrics and the vote.
    readme = (SCRIPTED_MODEL / "README.md").read_bytes()
    digest = "sha256:" + hashlib.sha256(f"{hashlib.sha256(readme).hexdigest()}  README.md\n".encode()).hexdigest()
    model = {"role": "model", "uri": SCRIPTED_MODEL.as_uri(), "digest": digest}
    spec = EvalRunSpec.model_validate(make_spec([bench]))
    assert record == {
        "model": model,
        "pinned": [model],
        "engine": spec.engine.to_wire() | {"batchInvariant": True, "library": "vllm", "version": None},
        "prompt": spec.prompt.to_wire(),
        "sampling": spec.sampling.to_wire(),
        "metrics": ["pass@1", "pass@2", "pass@4", "maj@4"],
        "majorityVote": "equivalence",
    }
    assert summary["pinned"] == [model]
    # One vLLM request per sample (n = 1), each with the seed its record claims.
    assert sorted((p.n, p.seed, p.max_tokens) for _, p in llm.added) == [(1, seed, 16) for seed in range(20)]
    records = read_records(tmp_path / "out" / "samples" / "fixture.jsonl")
    assert len(records) == 20
    p4 = sorted((r for r in records if r["problem_id"] == "p4"), key=lambda r: r["sample_index"])
    assert [(r["answer"], r["correct"], r["finish_reason"], r["seed"]) for r in p4] == [
        ("\\dfrac{1}{2}", True, "stop", 12),
        (None, False, "length", 13),
        ("\\frac{1}{2}", True, "stop", 14),
        (None, False, "length", 15),
    ]
    assert set(records[0]) == {
        "problem_id",
        "sample_index",
        "seed",
        "text",
        "answer",
        "correct",
        "rule",
        "output_tokens",
        "finish_reason",
        "stop_reason",
        "seconds",
    }


# A fine-tuned base model ends its turn with <|im_end|> (not its EOS) and, if nothing stops it, writes the next turn.
RUNS_ON = (
    "3 + 4 = 7, so \\boxed{7}.<|im_end|>\n<|im_start|>user\nNow what is 5 + 5?<|im_end|>\n"
    "<|im_start|>assistant\nThat is \\boxed{10}."
)


def test_samples_stop_at_the_end_of_the_chat_turn(tmp_path: Path, tokenizer: Any) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl", PROBLEMS[1:2])  # "What is 3 + 4?", gold 7
    llm = ScriptedLLM({"What is 3 + 4?": [Scripted(RUNS_ON)] * 4}, tokenizer)
    spec = make_spec([bench], sampling={"temperature": 1.0, "samples": 4, "maxTokens": 256, "seed": 0})
    summary = run_evaluate(make_pod(spec, tmp_path / "out"), loader=vllm_loader(llm))

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tokenizer.eos_token_id
    assert all({im_end, tokenizer.eos_token_id} <= set(p.stop_token_ids) for _, p in llm.added)
    records = read_records(tmp_path / "out" / "samples" / "fixture.jsonl")
    assert {(r["text"], r["answer"], r["correct"], r["finish_reason"], r["stop_reason"]) for r in records} == {
        ("3 + 4 = 7, so \\boxed{7}.", "7", True, "stop", im_end)
    }
    assert summary["scores"]["fixture"]["metrics"]["pass@1"]["value"] == 1.0


def test_completion_prompts_do_not_stop_on_a_chat_turn_end(tmp_path: Path, tokenizer: Any) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl", PROBLEMS[1:2])
    llm = ScriptedLLM({"What is 3 + 4?": [Scripted("\\boxed{7}")] * 4}, tokenizer)
    spec = make_spec(
        [bench],
        prompt={"style": "completion"},
        sampling={"temperature": 1.0, "samples": 4, "maxTokens": 16, "stopTokenIds": [5]},
    )
    run_evaluate(make_pod(spec, tmp_path / "out"), loader=vllm_loader(llm))
    assert {tuple(p.stop_token_ids) for _, p in llm.added} == {(5, tokenizer.eos_token_id)}


def test_majority_vote_as_the_study_ran_it(tmp_path: Path, tokenizer: Any) -> None:
    """NeMo-Skills' string vote at the study's commit: a tie goes to the answer sampled first (sample order, not the
    order the engine finished them in), spellings are not grouped."""
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    spec = make_spec([bench], metrics=["maj@4"], majorityVote="first-sampled")
    summary = run_evaluate(make_pod(spec, tmp_path / "out"), loader=vllm_loader(ScriptedLLM(SCRIPT, tokenizer)))
    # p1 "18" x4: 1; p2 5,7,7,5: the tie goes to "5", sampled first: 0; p3 "11" x2: 0; p4 "\dfrac{1}{2}" and
    # "\frac{1}{2}" one vote each, the tie goes to "\dfrac..." (sample 0, right): 1; p5 "99" x2: 0 -> 0.4;
    # squares .36*2 + .16*3 = 1.2
    assert_scores(summary["scores"]["fixture"]["metrics"], {"maj@4": {"value": 0.4, "stderr": math.sqrt(0.06)}})


def test_vllm_run_killed_mid_benchmark_resumes_per_sample(tmp_path: Path, tokenizer: Any) -> None:
    benches = [write_benchmark(tmp_path / "a.jsonl"), write_benchmark(tmp_path / "b.jsonl")]
    pod = make_pod(make_spec(benches), tmp_path / "out")

    # Three samples finish per step: a takes 7 steps; the kill comes at b's third step.
    with pytest.raises(Killed):
        run_evaluate(pod, loader=vllm_loader(ScriptedLLM(SCRIPT, tokenizer, fail_on_step=10)))
    assert len(read_records(tmp_path / "out" / "samples" / "a.jsonl")) == 20
    kept = read_records(tmp_path / "out" / "samples" / "b.jsonl")
    assert len(kept) == 6  # b's first two steps were recorded as they finished

    restarted = ScriptedLLM(SCRIPT, tokenizer)
    resumed = run_evaluate(pod, loader=vllm_loader(restarted))
    # Only b's 14 missing samples are asked for, each with its own seed.
    done_seeds = {r["seed"] for r in kept}
    assert sorted(p.seed for _, p in restarted.added) == sorted(set(range(20)) - done_seeds)

    uninterrupted = run_evaluate(
        make_pod(make_spec(benches), tmp_path / "fresh"), loader=vllm_loader(ScriptedLLM(SCRIPT, tokenizer))
    )
    assert resumed["scores"] == uninterrupted["scores"]
    assert_scores(resumed["scores"], {"a": EXPECTED, "b": EXPECTED})

    def by_sample(path: Path) -> dict[tuple[str, int], tuple[int, str]]:
        return {(r["problem_id"], r["sample_index"]): (r["seed"], r["text"]) for r in read_records(path)}

    assert by_sample(tmp_path / "out" / "samples" / "b.jsonl") == by_sample(tmp_path / "fresh" / "samples" / "b.jsonl")


def test_kill_mid_benchmark_then_resume(tmp_path: Path, tokenizer: Any) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    pod = make_pod(make_spec([bench], engine={"name": "transformers", "batchSize": 3}), tmp_path / "out")
    samples_file = tmp_path / "out" / "samples" / "fixture.jsonl"

    with pytest.raises(Killed):
        run_evaluate(pod, loader=lambda s, m: ScriptedBatchEngine(SCRIPT, tokenizer, kill_after=2))
    # Two batches of 3: p1 #0-3 and p2 #0-1 are recorded. A kill mid-write leaves half a line behind.
    assert [(r["problem_id"], r["sample_index"]) for r in read_records(samples_file)] == [
        ("p1", 0),
        ("p1", 1),
        ("p1", 2),
        ("p1", 3),
        ("p2", 0),
        ("p2", 1),
    ]
    with samples_file.open("a") as f:
        f.write('{"problem_id": "p2", "sample_index": 2, "se')

    restarted = ScriptedBatchEngine(SCRIPT, tokenizer)
    resumed = run_evaluate(pod, loader=lambda s, m: restarted)
    # Only the missing samples are asked for: p2 from sample 2 (seed 4 + 2), then p3..p5 whole.
    assert [(r.samples, r.seed) for r in restarted.requests] == [(2, 6), (4, 8), (4, 12), (4, 16)]
    assert all(PROBLEMS[i + 1]["problem"] in r.prompt for i, r in enumerate(restarted.requests))
    assert_scores(resumed["scores"], {"fixture": EXPECTED})
    assert len(read_records(samples_file)) == 20


def test_nothing_missing_means_no_engine(tmp_path: Path, tokenizer: Any) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    pod = make_pod(make_spec([bench]), tmp_path / "out")
    first = run_evaluate(pod, loader=vllm_loader(ScriptedLLM(SCRIPT, tokenizer)))

    def no_engine(spec: Any, source: Any) -> Any:
        raise AssertionError("the engine must not start when every sample is recorded")

    assert run_evaluate(pod, loader=no_engine) == first


def test_transformers_engine_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    spec = make_spec(
        [bench],
        model_uri=f"file://{tiny_model_dir}",
        engine={"name": "transformers", "dtype": "float32", "batchSize": 8},
    )
    summary = run_evaluate(make_pod(spec, tmp_path / "out"))

    score = BenchmarkScore.model_validate(summary["scores"]["fixture"])
    assert (score.problems, score.samples_per_problem) == (5, 4)
    assert set(score.metrics) == {"pass@1", "pass@2", "pass@4", "maj@4"}
    records = read_records(tmp_path / "out" / "samples" / "fixture.jsonl")
    assert sorted((r["problem_id"], r["sample_index"]) for r in records) == [
        (p["id"], i) for p in PROBLEMS for i in range(4)
    ]
    assert all(r["finish_reason"] in ("stop", "length") and 0 < r["output_tokens"] <= 16 for r in records)
    assert score.truncation_rate == sum(r["finish_reason"] == "length" for r in records) / 20
    # Same spec, same batches, same seeds: the same samples.
    run_evaluate(make_pod(spec, tmp_path / "again"))
    again = read_records(tmp_path / "again" / "samples" / "fixture.jsonl")
    assert [r["text"] for r in again] == [r["text"] for r in records]


def test_pod_entry_point_subprocess(tmp_path: Path, tiny_model_dir: Path) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    spec = make_spec(
        [bench],
        model_uri=f"file://{tiny_model_dir}",
        engine={"name": "transformers", "dtype": "float32", "batchSize": 16},
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(make_pod(spec, tmp_path / "out").model_dump_json(by_alias=True))
    termination = tmp_path / "termination-log"
    env = {**os.environ, "COTLAB_TERMINATION_LOG": str(termination), "HF_HUB_OFFLINE": "1"}

    proc = subprocess.run(
        [sys.executable, "-m", "cotlab.trainer", "evaluate", "--spec", str(spec_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    markers = [parse_marker(line) for line in proc.stdout.splitlines()]
    assert markers and all(m is not None for m in markers), "stdout carries progress markers only"
    assert markers[0] == {"benchmark": "fixture", "done": 0, "total": 20}
    assert markers[-1] == {"benchmark": "fixture", "done": 20, "total": 20}
    assert len(read_records(tmp_path / "out" / "samples" / "fixture.jsonl")) == 20
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())["scores"]
    summary = decode_summary(termination.read_text())
    assert summary is not None
    assert summary["scores"] == scores
    assert summary["outputs"] == {"samples": f"{tmp_path}/out/samples", "scores": f"{tmp_path}/out/scores.json"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 3: not valid JSON"),
        ('{"id": "p3", "answer": "12"}', 'line 3: field "problem" (problem) missing'),
        ('["a list"]', "line 3: expected a JSON object"),
    ],
    ids=["bad-json", "missing-field", "not-an-object"],
)
def test_malformed_benchmark_line_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, message: str
) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    rows = bench.read_text().splitlines()
    rows[2] = line
    bench.write_text("\n".join(rows) + "\n")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(make_pod(make_spec([bench]), tmp_path / "out").model_dump_json(by_alias=True))
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("COTLAB_TERMINATION_LOG", str(termination))

    assert main(["evaluate", "--spec", str(spec_file)]) == 3

    summary = decode_summary(termination.read_text())
    assert summary is not None and summary["exitCode"] == 3
    assert f"{bench} {message}" in summary["error"]


def test_entry_point_refuses_a_spec_for_another_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = make_pod(make_spec([tmp_path / "x.jsonl"]), tmp_path / "out").model_copy(update={"stage": "curate"})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(pod.model_dump_json(by_alias=True))
    monkeypatch.setenv("COTLAB_TERMINATION_LOG", str(tmp_path / "termination-log"))

    assert main(["evaluate", "--spec", str(spec_file)]) == 2
    assert (
        "stage is 'curate', but 'evaluate' was run" in json.loads((tmp_path / "termination-log").read_text())["error"]
    )


def test_every_stage_has_a_runner() -> None:
    assert sorted(entrypoint.RUNNERS) == sorted(entrypoint.STAGES) == ["curate", "evaluate", "finetune"]


def test_duplicate_benchmark_names_are_an_invalid_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(make_pod(make_spec([bench, bench]), tmp_path / "out").model_dump_json(by_alias=True))
    monkeypatch.setenv("COTLAB_TERMINATION_LOG", str(tmp_path / "termination-log"))
    assert main(["evaluate", "--spec", str(spec_file)]) == 2


def test_request_seeds_are_per_sample(tmp_path: Path, tokenizer: Any) -> None:
    """Sample i of a request has seed `request.seed + i`; records carry each sample's own seed."""
    bench = write_benchmark(tmp_path / "fixture.jsonl", PROBLEMS[:2])
    engine = ScriptedBatchEngine(SCRIPT, tokenizer, base_seed=7)
    spec = make_spec([bench], sampling={"temperature": 1.0, "samples": 4, "maxTokens": 16, "seed": 7})
    run_evaluate(make_pod(spec, tmp_path / "out"), loader=lambda s, m: engine)
    assert engine.requests == [
        SampleRequest(engine.requests[0].prompt, 4, 7),
        SampleRequest(engine.requests[1].prompt, 4, 11),
    ]
    records = read_records(tmp_path / "out" / "samples" / "fixture.jsonl")
    assert [r["seed"] for r in records] == list(range(7, 15))


@pytest.mark.parametrize(
    ("change", "field"),
    [({"engine": {"name": "vllm", "tensorParallelSize": 2}}, "engine"), ({"engine": {"name": "vllm",
      "batchInvariant": False}}, "engine")],
    ids=["tensor-parallel", "batch-invariance"],
)  # fmt: skip
def test_resume_refuses_samples_of_other_engine_settings(
    tmp_path: Path, tokenizer: Any, change: dict[str, Any], field: str
) -> None:
    """Tensor parallelism and batch invariance change what a seed draws: samples of two settings never mix."""
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    run_evaluate(make_pod(make_spec([bench]), tmp_path / "out"), loader=vllm_loader(ScriptedLLM(SCRIPT, tokenizer)))
    llm = ScriptedLLM(SCRIPT, tokenizer)
    with pytest.raises(InvalidSpecError, match=f"generated with a different {field}"):
        run_evaluate(make_pod(make_spec([bench], **change), tmp_path / "out"), loader=vllm_loader(llm))
    assert llm.added == []


def test_a_model_whose_files_changed_since_training_is_refused_before_it_loads(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    digest = (
        "sha256:" + hashlib.sha256(f"{hashlib.sha256(b'{}').hexdigest()}  config.json\n".encode()).hexdigest()
    )  # what the FineTuneRun recorded
    (model / "config.json").write_text('{"changed": true}')
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    pod = make_pod(make_spec([bench], model_uri=model.as_uri()), tmp_path / "out")
    pod.inputs.model, pod.inputs.model_digest = ModelSource(uri=model.as_uri()), digest
    with pytest.raises(InvalidInputError, match=f"{model.as_uri()} has digest sha256:.*, but {digest} was recorded"):
        run_evaluate(pod, loader=lambda spec, source: pytest.fail("the engine started"))


def test_a_hub_model_is_evaluated_at_the_commit_its_revision_names_when_the_pod_starts(
    tmp_path: Path, tokenizer: Any
) -> None:
    """The hub cannot be reached here: a stand-in for its answer (revision -> commit) is the one thing faked."""
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    spec = make_spec([bench]) | {"model": {"source": {"hub": "Qwen/Qwen2.5-32B"}}}
    commits = iter(["a" * 40, "b" * 40])  # `main` moves between the first attempt and the retry
    asked: list[tuple[str, str, str]] = []

    def hub(repo: str, revision: str, kind: str) -> str:
        asked.append((repo, revision, kind))
        return next(commits)

    loaded: list[str] = []

    def loader(spec: Any, source: Any) -> Any:
        loaded.append(source.revision)
        return vllm_loader(ScriptedLLM(SCRIPT, tokenizer))(spec, source)

    summary = run_evaluate(make_pod(spec, tmp_path / "out"), loader=loader, resolve=hub)
    pinned = {"role": "model", "hub": "Qwen/Qwen2.5-32B", "revision": "main", "commit": "a" * 40}
    assert (asked, loaded, summary["pinned"]) == ([("Qwen/Qwen2.5-32B", "main", "model")], ["a" * 40], [pinned])
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["model"] == pinned
    # The samples on disk are of commit a...; a retry that finds main at b... must not add b's samples to them.
    with pytest.raises(InvalidSpecError, match="generated with a different model"):
        run_evaluate(make_pod(spec, tmp_path / "out"), loader=loader, resolve=hub)


def test_an_attempt_that_crashed_before_its_first_sample_does_not_bind_the_retry(
    tmp_path: Path, tokenizer: Any
) -> None:
    """A model that would not load is replaced before the retry: no sample was written, so nothing can mix."""
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    pod = make_pod(make_spec([bench]), tmp_path / "out")
    with pytest.raises(OSError, match="config.json"):
        run_evaluate(pod, loader=lambda spec, source: (_ for _ in ()).throw(OSError("config.json is not valid JSON")))
    assert (tmp_path / "out" / "samples" / "fixture.fingerprint.json").exists()
    replaced = tmp_path / "replaced-model"
    replaced.mkdir()
    (replaced / "config.json").write_text("{}")  # other files, so another digest in the fingerprint
    other = make_pod(make_spec([bench], model_uri=replaced.as_uri()), tmp_path / "out")
    summary = run_evaluate(other, loader=vllm_loader(ScriptedLLM(SCRIPT, tokenizer)))
    assert summary["scores"]["fixture"]["problems"] == 5


def test_resume_refuses_samples_from_a_different_spec(tmp_path: Path, tokenizer: Any) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    run_evaluate(make_pod(make_spec([bench]), tmp_path / "out"), loader=vllm_loader(ScriptedLLM(SCRIPT, tokenizer)))
    hotter = make_spec([bench], sampling={"temperature": 0.7, "samples": 4, "maxTokens": 16, "seed": 0})
    llm = ScriptedLLM(SCRIPT, tokenizer)
    with pytest.raises(InvalidSpecError, match="generated with a different sampling"):
        run_evaluate(make_pod(hotter, tmp_path / "out"), loader=vllm_loader(llm))
    assert llm.added == []
