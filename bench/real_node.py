"""The quickstart on the real node against the local runner, on the same machine: where the cluster's time goes.

    sudo python bench/real_node.py          # root: the real node runs a kubelet, containerd and iptables rules

Baseline: `cotctl run --local -f manifests/examples/quickstart.yaml` (the pods' entry point as local processes,
one stage after another), timed per resource from the local state's condition timestamps and as a whole.
cotlab on the real node: the same manifests applied with `kubectl apply -f` into a namespace enforcing Pod
Security "restricted", with the operator installed by `kubectl apply -k manifests/overlays/dev` and the images
pulled from the node's registry; timed from the apply until each resource is Succeeded.

Prints, per resource, both times and their ratio, then the cluster's time split by the pods' own records: waiting
for a dependency (the operator making the Job), scheduling, image pull (the kubelet's Pulled event), container
start, and the stage itself (container start to finish), beside the same stage run locally. The two runs are one
after the other, never together, so neither slows the other. The images are built (cached) and pushed first;
that push is reported apart, as a cluster's registry would already hold them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import kube_controlplane  # noqa: E402
from real_cluster import RealCluster, restricted_namespace  # noqa: E402

from cotlab.api import GROUP, KINDS_BY_NAME, VERSION  # noqa: E402

QUICKSTART = REPO / "manifests" / "examples" / "quickstart.yaml"
COTCTL = str(Path(sys.executable).parent / "cotctl")


def stamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def run_local(root: Path) -> tuple[float, dict[str, float]]:
    """`cotctl run --local`, timed as a whole and per resource (its own figure: the stage's run)."""
    began = time.monotonic()
    done = subprocess.run(
        [COTCTL, "run", "--local", "-f", str(QUICKSTART), "-o", "json"],
        env={**os.environ, "COTLAB_LOCAL_ROOT": str(root)}, check=True, capture_output=True, text=True,
    )  # fmt: skip
    total = time.monotonic() - began
    runs = json.loads(done.stdout)["runs"]
    return total, {row["resource"].split("/", 1)[1]: float(row["seconds"]) for row in runs}


def pulled_seconds(events: list[Any], pod: str) -> float:
    """The kubelet's own figure for the pod's image pull ("Successfully pulled ... in 1.902s"), 0 when cached."""
    for event in events:
        if event.involved_object.name == pod and event.reason == "Pulled":
            found = re.search(r" in ([0-9.]+)(ms|s) ", event.message or "")
            if found:
                return float(found[1]) / (1000 if found[2] == "ms" else 1)
    return 0.0


def run_cluster(cluster: RealCluster, api: kubernetes.client.ApiClient, docs: list[dict[str, Any]], data: Path) -> Any:
    namespace = restricted_namespace(api, "bench-quickstart", data)
    custom = kubernetes.client.CustomObjectsApi(api)
    applied = time.time()
    cluster.kubectl("apply", "-n", namespace, "-f", str(QUICKSTART))
    done: dict[str, float] = {}
    while len(done) < len(docs):
        for doc in docs:
            name = doc["metadata"]["name"]
            if name in done:
                continue
            body = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, KINDS_BY_NAME[doc["kind"]].plural, name
            )
            phase = (body.get("status") or {}).get("phase")
            if phase == "Failed":
                raise RuntimeError(f"{name} failed: {body['status']}")
            if phase == "Succeeded":
                done[name] = time.time() - applied
        time.sleep(1)
    core = kubernetes.client.CoreV1Api(api)
    batch = kubernetes.client.BatchV1Api(api)
    events = core.list_namespaced_event(namespace).items
    split: dict[str, dict[str, float]] = {}
    for doc in docs:
        name = doc["metadata"]["name"]
        [job] = batch.list_namespaced_job(namespace, label_selector=f"cotlab.dev/name={name}").items
        [pod] = core.list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}").items
        scheduled = next(stamp(c.last_transition_time) for c in pod.status.conditions if c.type == "PodScheduled")
        terminated = pod.status.container_statuses[0].state.terminated
        pull = pulled_seconds(events, pod.metadata.name)
        split[name] = {
            "dependency+job": stamp(job.metadata.creation_timestamp) - applied,
            "scheduling": scheduled - stamp(pod.metadata.creation_timestamp),
            "image pull": pull,
            "container start": stamp(terminated.started_at) - scheduled - pull,
            "stage": stamp(terminated.finished_at) - stamp(terminated.started_at),
            "status": applied + done[name] - stamp(terminated.finished_at),
        }
    return done, split


def main() -> int:
    if os.geteuid() != 0:
        print("bench/real_node.py needs root (kubelet, containerd, iptables)", file=sys.stderr)
        return 1
    bin_dir = kube_controlplane.controlplane_bin_dir()
    if bin_dir is None:
        print("control-plane binaries missing: bash tests/cluster/build-controlplane.sh", file=sys.stderr)
        return 1
    docs = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]
    work = Path(tempfile.mkdtemp(prefix="cotlab-bench-real-node-"))
    began = time.monotonic()
    cluster = RealCluster.start(bin_dir, work / "cluster")
    print(f"real node up and images pushed in {time.monotonic() - began:.0f}s", flush=True)
    try:
        began = time.monotonic()
        cluster.install_operator()
        print(f"operator installed and Available in {time.monotonic() - began:.0f}s", flush=True)
        with cluster.plane.api_client() as api:
            cluster_times, split = run_cluster(cluster, api, docs, work / "claim")
    finally:
        cluster.stop()
    local_total, local_times = run_local(work / "local")

    print(f"\n{'resource':<20} {'cluster apply->Succeeded':>25} {'local stage':>12} {'ratio':>7}")
    for doc in docs:
        name = doc["metadata"]["name"]
        print(f"{name:<20} {cluster_times[name]:>24.0f}s {local_times[name]:>11.0f}s "
              f"{cluster_times[name] / local_times[name]:>6.2f}x")  # fmt: skip
    whole = max(cluster_times.values())
    print(f"{'the whole quickstart':<20} {whole:>24.0f}s {local_total:>11.0f}s {whole / local_total:>6.2f}x")
    print("\nwhere the cluster's time goes, per resource (seconds):")
    for name, parts in split.items():
        print(f"  {name:<20} " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    print(json.dumps({"cluster": cluster_times, "local": local_times, "local_total": local_total, "split": split}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
