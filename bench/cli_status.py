"""Benchmark `cotctl status -A` over 500 resources against `kubectl get` of the same resources, in the same run.

    python bench/cli_status.py [--resources N] [--runs R] [--kubeconfig FILE]

Without --kubeconfig a control plane is started from the cluster tests' cached binaries (tests/cluster/README.md)
and torn down afterwards. N resources (a third of each kind, over two namespaces) are created with server-side
apply, and most get a realistic status: finished TraceDatasets with stats, FineTuneRuns with progress and loss,
EvalRuns running or scored on three benchmarks.

Baseline: `kubectl get tracedatasets,finetuneruns,evalruns -A` (the project's kubectl, v1.37), which prints the
CRDs' printer columns for the same objects. Each command runs R times, alternating, as a fresh process with
stdout to /dev/null, as a user would run it. Also timed: the interpreter loading cotctl with its status command
and doing nothing, the floor under `cotctl status`.

Prints the medians, the ratio, and whether the targets hold (under 2 s, within 2x of kubectl).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAMESPACES = ("bench-a", "bench-b")
NOW = "2026-11-28T12:00:00Z"


def documents(count: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in NAMESPACES
    ]
    for i in range(count):
        meta = {"name": f"run-{i}", "namespace": NAMESPACES[i % 2], "labels": {"cotlab.dev/experiment": "bench"}}
        kind = ("TraceDataset", "FineTuneRun", "EvalRun")[i % 3]
        if kind == "TraceDataset":
            spec: dict[str, Any] = {"source": {"uri": "file:///traces.jsonl"}, "select": {"count": 20}}
        elif kind == "FineTuneRun":
            spec = {"baseModel": {"hub": "Qwen/Qwen2.5-32B"}, "datasetRef": {"name": f"run-{i - 1}"}}
        else:
            spec = {
                "model": {"fineTuneRunRef": {"name": f"run-{i - 1}"}},
                "benchmarks": [{"name": "aime24"}, {"name": "aime25"}, {"name": "hmmt-24-25"}],
            }
        docs.append({"apiVersion": "cotlab.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec})
    return docs


def _condition(type_: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": NOW}


def status_for(kind: str, i: int) -> dict[str, Any] | None:
    """A status as the operator writes it: a mix of finished, running and pending resources."""
    if i % 10 == 9:
        return None  # still Pending
    if kind == "TraceDataset":
        return {"phase": "Succeeded", "conditions": [_condition("Ready", "Succeeded", "20 traces")], "count": 20,
                "artifact": {"uri": f"pvc://cotlab-artifacts/run-{i}", "digest": "sha256:" + "ab" * 32},
                "stats": {"tokens": {"min": 900, "p50": 4100, "p90": 9000, "max": 15000}}}  # fmt: skip
    if kind == "FineTuneRun":
        running = _condition("Running", "PodRunning", f"pod run-{i}-finetune-x is running (attempt 1)")
        progress = {"step": 12, "totalSteps": 60, "loss": 0.8123, "percent": 20.0, "etaSeconds": 1800}
        return {"phase": "Running", "attempts": 1, "startTime": NOW, "conditions": [running], "progress": progress}
    metrics = {"pass@1": {"value": 0.0927, "stderr": 0.021}, "maj@64": {"value": 0.3333, "stderr": 0.087}}
    score = {"problems": 30, "samplesPerProblem": 64, "metrics": metrics}
    return {"phase": "Succeeded", "attempts": 1, "conditions": [_condition("Ready", "Succeeded", "scored")],
            "scores": {b: score for b in ("aime24", "aime25", "hmmt-24-25")},
            "outputs": {"samples": f"pvc://cotlab-artifacts/run-{i}/samples"}}  # fmt: skip


def populate(kubeconfig: Path, count: int) -> None:
    import kubernetes.client
    import kubernetes.config

    docs = documents(count)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": docs}, f)
        f.flush()
        subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), "apply", "--server-side", "-f", f.name],
                       check=True, capture_output=True)  # fmt: skip
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    custom = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))
    plurals = {"TraceDataset": "tracedatasets", "FineTuneRun": "finetuneruns", "EvalRun": "evalruns"}

    def patch(index_doc: tuple[int, dict[str, Any]]) -> None:
        i, doc = index_doc
        status = status_for(doc["kind"], i)
        if status is not None:
            meta = doc["metadata"]
            custom.patch_namespaced_custom_object_status(
                "cotlab.dev", "v1alpha1", meta["namespace"], plurals[doc["kind"]], meta["name"], {"status": status}
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(patch, enumerate(d for d in docs if d["kind"] != "Namespace")))


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--kubeconfig", type=Path, help="an existing cluster with the CRDs (default: start one)")
    args = parser.parse_args()

    plane = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        sys.path.insert(0, str(REPO / "tests" / "cluster"))
        import kube_controlplane

        bin_dir = kube_controlplane.controlplane_bin_dir()
        if bin_dir is None:
            print("bench/cli_status.py: control-plane binaries missing: bash tests/cluster/build-controlplane.sh",
                  file=sys.stderr)  # fmt: skip
            return 1
        plane = kube_controlplane.ControlPlane(bin_dir=bin_dir, workdir=Path(tempfile.mkdtemp(prefix="cli-bench-")))
        plane.start()
        kubeconfig = plane.kubeconfig
    try:
        populate(kubeconfig, args.resources)
        cotctl = [str(BIN / "cotctl"), "status", "-A", "--kubeconfig", str(kubeconfig)]
        kinds = "tracedatasets,finetuneruns,evalruns"
        kubectl = [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), "get", kinds, "-A"]
        floor = [sys.executable, "-c", "from cotlab.cli.main import build_app; build_app('status')"]
        listed = subprocess.run(cotctl[:-2] + ["-o", "json", "--kubeconfig", str(kubeconfig)], capture_output=True,
                                text=True, check=True)  # fmt: skip
        shown = len(json.loads(listed.stdout)["items"])
        if shown != args.resources:
            print(f"cotctl status -A listed {shown} resources, expected {args.resources}", file=sys.stderr)
            return 1
        timed(cotctl), timed(kubectl)  # warm the page cache and kubectl's discovery cache
        times: dict[str, list[float]] = {"cotctl": [], "kubectl": [], "floor": []}
        for _ in range(args.runs):
            times["cotctl"].append(timed(cotctl))
            times["kubectl"].append(timed(kubectl))
            times["floor"].append(timed(floor))
    finally:
        if plane is not None:
            plane.stop()
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.resources} resources, {args.runs} runs each, medians (min):")
    print(f"  cotctl status -A:                 {median['cotctl']:.2f} s ({min(times['cotctl']):.2f} s)")
    print(f"  kubectl get <3 kinds> -A (base):  {median['kubectl']:.2f} s ({min(times['kubectl']):.2f} s)")
    print(f"  loading cotctl status (floor):    {median['floor']:.2f} s ({min(times['floor']):.2f} s)")
    ratio = median["cotctl"] / median["kubectl"]
    print(f"ratio (cotctl / kubectl): {ratio:.2f}x")
    print(f"above the startup floor: {median['cotctl'] - median['floor']:.2f} s")
    under = median["cotctl"] < 2.0
    within = ratio <= 2
    print(f"target under 2 s: {'met' if under else 'missed'}; within 2x of kubectl: {'met' if within else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
