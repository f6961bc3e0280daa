"""How fast the operator turns many resources into Jobs, against a plain client making the same children; and what
a busy cluster costs it.

    python bench/operator_scale.py [--resources N]
    python bench/operator_scale.py --busy [--resources N] [--unrelated-pods 5000] [--unrelated-jobs 1000]

On the from-source control plane of the cluster tests (no pod executor, so pods never start):

- Baseline ("plain client"): one kubernetes client creates, one after the other, exactly the children the operator
  would make for N EvalRuns (each one spec ConfigMap and one Job, from `cotlab.operator.builders`).
- cotlab: the same client creates N EvalRuns one after the other, as fast as it can (as `kubectl apply` of one
  file does, only faster: client-side `kubectl apply` of 200 documents took 32 s here, four times the baseline,
  which would measure kubectl, not the operator); the clock runs from the first create until every EvalRun has
  its Job. The operator runs as a process, as its ServiceAccount, watching the namespace.

Prints both times, their ratio (the figure; target under 3), the operator's peak RSS (target under 300 MB) and
the API requests it sent per resource (creates, status patches, events, and its informers' lists and watches).

`--busy` measures the operator watching every namespace (`-A`), first on a quiet cluster, then (a fresh process, a
fresh namespace, the same N EvalRuns) after `--unrelated-pods` pods and `--unrelated-jobs` suspended Jobs were
made in ten other namespaces, none of them the operator's: the baseline is the quiet run. Targets: peak RSS
within 50 MB of the quiet run's, and no more API requests per resource.
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
    plane: kube_controlplane.ControlPlane,
    api: Any,
    namespace: str,
    count: int,
    workdir: Path,
    *,
    everywhere: bool = False,
) -> dict[str, float]:
    """Seconds until `count` EvalRuns each have their Job, and what the operator spent on it. `everywhere`: the
    operator watches every namespace, as the install's Deployment does."""
    kubeconfig = operator_process.install_operator_identity(plane, api, workdir)
    # The operator's production timings (the test fixture resyncs every 2 s, 100 reconciles a second here).
    defaults = {"COTLAB_RESYNC_SECONDS": "10", "COTLAB_PROGRESS_INTERVAL_SECONDS": "15"}
    log = workdir / f"operator-{namespace}.log"
    process = operator_process.OperatorProcess(kubeconfig, None if everywhere else namespace, log, env=defaults)
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


def make_unrelated(api: kubernetes.client.ApiClient, pods: int, jobs: int, namespaces: int = 10) -> float:
    """`pods` pods and `jobs` suspended Jobs, none of them cotlab's, spread over `namespaces` namespaces; seconds.

    The pods are bound to a node that does not exist (`nodeName`), so no scheduler or kubelet works on them; the
    Jobs are suspended, so the Job controller makes no pods. Both look like what a busy cluster holds: labels,
    an owner-less pod spec with env and resources, a few KB each on the wire.
    """
    core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
    names = [f"unrelated-{i}" for i in range(namespaces)]
    for name in names:
        make_namespace(api, name)
    container = {
        "name": "app", "image": "registry.example.com/team/app:1.2.3", "command": ["/app", "--serve"],
        "env": [{"name": f"SETTING_{i}", "value": "x" * 40} for i in range(12)],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    }  # fmt: skip
    start = time.monotonic()
    for i in range(pods):
        pod = {"metadata": {"name": f"pod-{i:05d}", "labels": {"app": "unrelated", "team": f"t{i % 7}"}},
               "spec": {"nodeName": "nowhere", "containers": [container]}}  # fmt: skip
        core.create_namespaced_pod(names[i % namespaces], pod, _preload_content=False)  # type: ignore[arg-type]
    for i in range(jobs):
        job = {
            "metadata": {"name": f"job-{i:05d}", "labels": {"app": "unrelated"}},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
        }
        batch.create_namespaced_job(names[i % namespaces], job, _preload_content=False)  # type: ignore[arg-type]
    return time.monotonic() - start


def delete_runs(api: kubernetes.client.ApiClient, namespace: str) -> None:
    """Delete a finished measurement's EvalRuns and wait until they and their Jobs are gone."""
    custom, batch = kubernetes.client.CustomObjectsApi(api), kubernetes.client.BatchV1Api(api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "evalruns")
    deadline = time.monotonic() + 300
    while custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "evalruns")["items"] or (
        batch.list_namespaced_job(namespace, limit=1).items
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{namespace}: EvalRuns or Jobs still there after 300 s")
        time.sleep(1)


def peak_rss_mb(process: operator_process.OperatorProcess) -> float:
    """VmHWM (peak resident set) of the Python process under the `timeout` wrapper."""
    assert process.popen is not None
    children = Path(f"/proc/{process.popen.pid}/task/{process.popen.pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    kib = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
    return kib / 1024


def busy(args: argparse.Namespace, plane: kube_controlplane.ControlPlane, api: Any, workdir: Path) -> None:
    n = args.resources
    make_namespace(api, "bench-quiet")
    quiet = operator_run(plane, api, "bench-quiet", n, workdir, everywhere=True)
    delete_runs(api, "bench-quiet")
    made = make_unrelated(api, args.unrelated_pods, args.unrelated_jobs)
    make_namespace(api, "bench-busy")
    loud = operator_run(plane, api, "bench-busy", n, workdir, everywhere=True)
    print(f"{n} EvalRuns, the operator watching every namespace (-A)")
    print(f"  made {args.unrelated_pods} unrelated pods and {args.unrelated_jobs} suspended Jobs in 10 other "
          f"namespaces in {made:.0f} s")  # fmt: skip
    print("                                    quiet cluster   busy cluster")
    print(f"  seconds until every Job exists  : {quiet['seconds']:13.2f}   {loud['seconds']:12.2f}")
    print(f"  operator peak RSS (MB)          : {quiet['peak_rss_mb']:13.0f}   {loud['peak_rss_mb']:12.0f}"
          f"   (busy - quiet: {loud['peak_rss_mb'] - quiet['peak_rss_mb']:+.0f} MB; target within 50)")  # fmt: skip
    print(
        f"  API requests per resource       : {quiet['requests'] / n:13.2f}   {loud['requests'] / n:12.2f}"
        "   (target: no more)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--busy", action="store_true", help="compare a quiet cluster with a busy one (see above)")
    parser.add_argument("--unrelated-pods", type=int, default=5000)
    parser.add_argument("--unrelated-jobs", type=int, default=1000)
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
            if args.busy:
                busy(args, plane, api, workdir)
                return 0
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
