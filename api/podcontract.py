"""The pod contract, spoken by both the operator and the pods: spec file, progress markers, summary, exit codes.

- The operator writes a `PodSpecFile` into a ConfigMap mounted at `SPEC_PATH`; the container runs
  `python -m cotlab.trainer <stage> --spec SPEC_PATH` (no shell, no spec value on the command line).
- While it works, the pod prints progress markers: one JSON object per line on stdout, `{"cotlab": "progress", …}`.
- At the end it writes a summary (at most `MAX_SUMMARY_BYTES`) to the termination message file and exits
  with an `ExitCode`; codes marked permanent make the Job fail fast instead of retrying.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import Field

from .base import CamelModel, Name, ShortStr, Uri
from .models import ModelSource
from .tracedataset import Artifact

# The summaries each stage writes (keys, camelCase): the operator and the local runner reduce them into status.
#   curate:   {"stage", "artifact": {"uri", "digest"}, "count", "stats", "pinned"}
#   finetune: {"stage", "outputs": {"model": {"uri", "digest"}}, "progress", "pinned"}
#   evaluate: {"stage", "outputs": {"samples", "scores"}, "scores": {benchmark: BenchmarkScore}, "pinned"}
#   "pinned" lists the PinnedInputs (models.py) each stage resolved when it started (hub commits, local digests).
#   failure:  {"stage", "error", "exitCode"}, and "signal" ("SIGKILL") when a fine-tune worker was killed by one

SPEC_DIR = "/etc/cotlab"
SPEC_FILE = "spec.json"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_FILE}"
TERMINATION_LOG = "/dev/termination-log"
# The hub token's environment variable: the operator fills it from a spec's tokenSecretRef, never the spec itself.
HF_TOKEN_ENV = "HF_TOKEN"
# Overrides TERMINATION_LOG outside a kubelet (the local runner, tests): where the summary is written.
TERMINATION_LOG_ENV = "COTLAB_TERMINATION_LOG"
MAX_SUMMARY_BYTES = 4096  # the kubelet's cap on a container's termination message
MARKER_KEY = "cotlab"

Stage = Literal["curate", "finetune", "evaluate"]
STAGE_BY_KIND: dict[str, Stage] = {"TraceDataset": "curate", "FineTuneRun": "finetune", "EvalRun": "evaluate"}


# Multi-node fine-tuning: the rendezvous (torch's static TCPStore) listens on this port of the node-rank-0 pod,
# whose DNS name the operator passes as MASTER_ADDR; the node rank is the Indexed Job's JOB_COMPLETION_INDEX.
RENDEZVOUS_PORT = 29500


class ExitCode(IntEnum):
    """Exit codes of the pod entry points; the permanent ones are never retried."""

    OK = 0
    # Something unexpected (a crash, a lost connection): retried up to spec.maxRetries.
    RETRYABLE = 1
    # The spec can never work (e.g. an unknown benchmark field): fail fast.
    INVALID_SPEC = 2
    # The input data is malformed (a bad trace line, a missing column): fail fast.
    INVALID_INPUT = 3
    # A trace is longer than training.maxSeqLength: refused rather than silently cut.
    TRACE_TOO_LONG = 4


PERMANENT_EXIT_CODES = (ExitCode.INVALID_SPEC, ExitCode.INVALID_INPUT, ExitCode.TRACE_TOO_LONG)


class ResourceRef(CamelModel):
    kind: Literal["TraceDataset", "FineTuneRun", "EvalRun"]
    name: Name
    namespace: Name = "default"
    uid: ShortStr | None = None
    generation: int | None = None


class Inputs(CamelModel):
    """What the operator resolved for the pod: the dataset artifact, the model to train or evaluate."""

    dataset: Artifact | None = None
    model: ModelSource | None = None
    model_digest: ShortStr | None = Field(
        default=None, description="Digest of the resolved model (a FineTuneRun's output): what samples depend on."
    )


class PodSpecFile(CamelModel):
    """The file the operator mounts at SPEC_PATH and the local runner writes to a temp dir."""

    stage: Stage
    resource: ResourceRef
    spec: dict[str, Any] = Field(description="The resource's spec, as stored (camelCase).")
    inputs: Inputs = Field(default_factory=Inputs)
    output: Uri = Field(description="Where the stage writes its artifacts (fsspec URI).")
    checkpoint_dir: Uri | None = None

    @classmethod
    def load(cls, path: str | Path) -> PodSpecFile:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


def emit_progress(stream: TextIO | None = None, **fields: Any) -> None:
    """Print one progress marker line; the operator and `cotctl status` parse these from the pod log."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps({MARKER_KEY: "progress", **fields}, separators=(",", ":"), sort_keys=True) + "\n")
    out.flush()


def parse_marker(line: str) -> dict[str, Any] | None:
    """The fields of a progress marker line, or None for any other log line."""
    line = line.strip()
    if not line.startswith("{") or MARKER_KEY not in line:
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get(MARKER_KEY) != "progress":
        return None
    return {k: v for k, v in value.items() if k != MARKER_KEY}


def _rounded(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def encode_summary(summary: dict[str, Any]) -> str:
    """The summary as compact JSON within MAX_SUMMARY_BYTES: floats are rounded to 4 significant digits if
    that makes it fit, and only then are the largest fields dropped (`truncated: true` says so).

    The full results always live at the output URI: the termination message is only a digest.
    """
    body = dict(summary)
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_SUMMARY_BYTES:
        body = _rounded(body, 4)
        text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    while len(text.encode()) > MAX_SUMMARY_BYTES and body:
        largest = max(body, key=lambda k: len(json.dumps(body[k])))
        del body[largest]
        body["truncated"] = True
        text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    return text


def write_summary(summary: dict[str, Any], path: str | Path = TERMINATION_LOG) -> None:
    """Write the summary where the kubelet reads the termination message."""
    Path(path).write_text(encode_summary(summary), encoding="utf-8")


def decode_summary(message: str | None) -> dict[str, Any] | None:
    """The summary from a container's termination message, or None when there is none or it is not ours."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
