"""How fast the operator turns many resources into Jobs, against a plain client making the same children.

    python bench/operator_scale.py [--resources N]

On the from-source control plane of the cluster tests (no pod executor, so pods never start):

- Baseline ("plain client"): one kubernetes client creates, one after the other, exactly the children the operator
  would make for N EvalRuns (each one spec ConfigMap and one Job, from `cotlab.operator.builders`).
- cotlab: the same client creates N EvalRuns one after the other, as fast as it can (as `kubectl apply` of one
  file does, only faster: client-side `kubectl apply` of 200 documents took 32 s here, four times the baseline,
  which would measure kubectl, not the operator); the clock runs from the first create until every EvalRun has
  its Job. The operator runs as a process, as its ServiceAccount, watching the namespace.

Prints both times, their ratio (the figure; target under 3), the operator's peak RSS (target under 300 MB) and
the API requests its reconciles sent per resource (creates, status patches, events; kopf's watch streams are
not counted).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes.client

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import kube_controlplane  # noqa: E402
import operator_process  # noqa: E402

from cotlab.api import GROUP, VERSION  # noqa: E402
from cotlab.api.podcontract import Inputs  # noqa: E402
from cotlab.api.validation import parse_resource  # noqa: E402
from cotlab.operator.builders import build_children  # noqa: E402
from cotlab.operator.settings import OperatorSettings  # noqa: E402


def eval_run(index: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": f"eval-{index:04d}", "namespace": namespace},
        "spec": {
            "model": {"source": {"hub": "Qwen/Qwen2.5-0.5B", "revision": "main"}},
            "benchmarks": [{"name": "aime24"}],
            "sampling": {"samples": 8, "maxTokens": 1024},
            "metrics": ["pass@1", "maj@8"],
        },
    }


def make_namespace(api: kubernetes.client.ApiClient, name: str) -> None:
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if core.list_namespaced_service_account(name).items:
            return
        time.sleep(0.1)


def plain_client(api: kubernetes.client.ApiClient, namespace: str, count: int) -> float:
    """Seconds for one client to create the children of `count` EvalRuns, sequentially."""
    core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
    settings = OperatorSettings()
    children = []
    for i in range(count):
        doc = eval_run(i, namespace)
        doc["metadata"]["uid"] = f"00000000-0000-0000-0000-{i:012d}"
        children.append(build_children(parse_resource(doc), Inputs(), settings))
    for child in children:  # no owner exists: the baseline's children are orphans, which the API accepts
        child.config_map["metadata"].pop("ownerReferences")
        child.job["metadata"].pop("ownerReferences")
    start = time.monotonic()
    for child in children:
        core.create_namespaced_config_map(namespace, child.config_map)  # type: ignore[arg-type]
        batch.create_namespaced_job(namespace, child.job, _preload_content=False)  # type: ignore[arg-type]
    return time.monotonic() - start


def operator_run(
    plane: kube_controlplane.ControlPlane, api: Any, namespace: str, count: int, workdir: Path
) -> dict[str, float]:
    kubeconfig = operator_process.install_operator_identity(plane, api, workdir)
    # The operator's production timings (the test fixture resyncs every 2 s, 100 reconciles a second here).
    defaults = {"COTLAB_RESYNC_SECONDS": "10", "COTLAB_PROGRESS_INTERVAL_SECONDS": "15"}
    process = operator_process.OperatorProcess(kubeconfig, namespace, workdir / "operator.log", env=defaults)
    process.start()
    try:
        custom = kubernetes.client.CustomObjectsApi(api)
        batch = kubernetes.client.BatchV1Api(api)
        start = time.monotonic()
        for i in range(count):
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "evalruns", eval_run(i, namespace))
        applied = time.monotonic() - start
        while len(batch.list_namespaced_job(namespace).items) < count:
            if time.monotonic() - start > 600:
                raise TimeoutError(f"not every EvalRun had its Job after 600 s:\n{process.tail()}")
            time.sleep(0.1)
        seconds = time.monotonic() - start
        time.sleep(3)  # let the status patches of the last reconciles land before counting requests
        metrics = process.metrics()
        requests = sum(float(v) for v in re.findall(r"^cotlab_operator_api_requests_total\{.*\} (\S+)$", metrics, re.M))
        return {"seconds": seconds, "apply_seconds": applied, "peak_rss_mb": peak_rss_mb(process), "requests": requests}
    finally:
        process.stop()


def peak_rss_mb(process: operator_process.OperatorProcess) -> float:
    """VmHWM (peak resident set) of the Python process under the `timeout` wrapper."""
    assert process.popen is not None
    children = Path(f"/proc/{process.popen.pid}/task/{process.popen.pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    kib = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
    return kib / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=200)
    args = parser.parse_args()
    bin_dir = kube_controlplane.controlplane_bin_dir()
    if bin_dir is None:
        print("control plane not built: bash tests/cluster/build-controlplane.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with (
            kube_controlplane.ControlPlane(bin_dir=bin_dir, workdir=workdir / "plane") as plane,
            plane.api_client() as api,
        ):
            make_namespace(api, "baseline")
            make_namespace(api, "bench")
            baseline = plain_client(api, "baseline", args.resources)
            cotlab = operator_run(plane, api, "bench", args.resources, workdir)
    n = args.resources
    print(f"{n} EvalRuns -> {n} Jobs (and {n} spec ConfigMaps)")
    print(f"  plain client, sequential creates : {baseline:6.2f} s")
    print(f"  cotlab operator, from first create: {cotlab['seconds']:6.2f} s")
    print(f"    of which creating the EvalRuns  : {cotlab['apply_seconds']:6.2f} s")
    print(f"  ratio cotlab / plain client       : {cotlab['seconds'] / baseline:6.2f}   (target < 3)")
    print(f"  operator peak RSS                 : {cotlab['peak_rss_mb']:6.0f} MB (target < 300)")
    print(f"  API requests per resource         : {cotlab['requests'] / n:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
