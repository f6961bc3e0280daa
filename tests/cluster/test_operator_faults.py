"""An API server that answers 429 or 500 to everything for 60 s: the operator backs off, recovers, and ends where an
undisturbed run ends.

The operator (a process, as its ServiceAccount) reaches the API server through `api_proxy.FaultyApiProxy`; the pod
executor and the test reach it directly, so the run's pod goes on working through the outage, as it would on a
cluster whose control plane is overloaded. The proxy counts what it refused.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from api_proxy import FaultyApiProxy
from kube_controlplane import ControlPlane, new_api_client
from kube_wait import wait_for
from operator_process import OperatorProcess
from test_operator import apply, eval_run, jobs_of, wait_phase, write_benchmark

from cotlab.api.children import LABEL_MANAGED_BY, MANAGED_BY
from cotlab.operator.informers import WATCHED, Informer
from cotlab.operator.kubeapi import KubeApi
from cotlab.operator.metrics import OperatorMetrics
from cotlab.operator.settings import OperatorSettings

OUTAGE_SECONDS = 60
# What backing off allows in 60 s: seven informers retrying after about 1, 2, 4, 8, 16, 16, 16 s (8 tries each),
# the progress log read once per resync (2 s here, 30 tries), Kueue discovery every 30 s. Measured: 74 and 74 (67
# and 68 with the default cap of 60 s). Retrying at once, the informers alone would send thousands (the client-side
# limit, 100 a second, caps it at 6,000).
MOST_REFUSED = 120


@pytest.fixture
def proxy(control_plane: ControlPlane) -> Iterator[FaultyApiProxy]:
    # Trusts the plane's CA but presents no client certificate: the operator's own token must authenticate it.
    context = ssl.create_default_context(cafile=str(control_plane.pki / "ca.crt"))
    relay = FaultyApiProxy("127.0.0.1", control_plane.apiserver_port, context)
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture
def proxied_kubeconfig(operator_kubeconfig: Path, proxy: FaultyApiProxy, tmp_path: Path) -> Path:
    """The operator's identity, through the proxy."""
    config = json.loads(operator_kubeconfig.read_text())
    config["clusters"][0]["cluster"] = {"server": proxy.url}
    kubeconfig = tmp_path / "proxied.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    return kubeconfig


@pytest.fixture
def proxied_operator(
    proxied_kubeconfig: Path, namespace: str, artifact_claim: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    # Backoff capped at 16 s rather than the default 60: the same doubling (1, 2, 4, 8, 16 s) shows within the
    # outage, and the run resumes within about 16 s of its end instead of up to a minute (measured: 121 s for the
    # whole test at 60).
    env = {"COTLAB_RETRY_MAX_SECONDS": "16"}
    process = OperatorProcess(proxied_kubeconfig, namespace, tmp_path / "operator.log", env=env)
    process.start()
    yield process
    process.stop()
    print(f"--- operator log ({process.log}) ---\n{process.tail(200)}")


def shape(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((c["type"], c["status"], c["reason"]) for c in body["status"]["conditions"])


@pytest.mark.parametrize("status", [429, 500])
def test_an_api_server_answering_errors_for_60_s(
    status: int,
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    proxy: FaultyApiProxy,
    proxied_operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    bench = write_benchmark(tmp_path)
    longer = {"sampling": {"samples": 8, "temperature": 1.0, "maxTokens": 48, "seed": 0}}
    apply(kubeconfig, namespace, tmp_path, eval_run("undisturbed", bench, model=tiny_model_dir, **longer))
    reference = wait_phase(kube_api, namespace, "EvalRun", "undisturbed", "Succeeded")

    apply(kubeconfig, namespace, tmp_path, eval_run("disturbed", bench, model=tiny_model_dir, **longer))
    wait_phase(kube_api, namespace, "EvalRun", "disturbed", "Running")
    started = time.monotonic()
    proxy.fail(status, OUTAGE_SECONDS)
    time.sleep(OUTAGE_SECONDS)
    outage = [r for r in proxy.refused if started <= r[0]]
    survived = wait_phase(kube_api, namespace, "EvalRun", "disturbed", "Succeeded")

    # It noticed, and backed off instead of hammering.
    paths = Counter(re.sub(r"/namespaces/[^/]+", "/namespaces/NS", path.split("?")[0]) for _, _, path in outage)
    print(f"{status} for {OUTAGE_SECONDS} s: the operator sent {len(outage)} requests into it: {paths.most_common()}")
    assert 0 < len(outage) <= MOST_REFUSED, f"{len(outage)} requests refused in {OUTAGE_SECONDS} s"
    metrics = proxied_operator.metrics()
    failures = sum(float(v) for v in re.findall(r"^cotlab_operator_watch_failures_total\{.*\} (\S+)$", metrics, re.M))
    assert failures > 0
    # And recovered to the end state of the undisturbed run.
    assert len(jobs_of(kube_api, namespace, "disturbed")) == 1
    assert survived["status"]["scores"] == reference["status"]["scores"]
    assert survived["status"]["attempts"] == reference["status"]["attempts"] == 1
    assert shape(survived) == shape(reference)


class _HealthAtArrival:
    """A sink that records, for each object it is handed, whether the informer already called itself healthy."""

    def __init__(self) -> None:
        self.informer: Informer | None = None
        self.seen: dict[str, bool] = {}

    def deliver(self, kind: str, event_type: str, body: dict[str, Any]) -> None:
        assert self.informer is not None
        self.seen.setdefault(body["metadata"]["name"], self.informer.healthy)

    def replace(self, kind: str, namespace: str | None, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            self.deliver(kind, "ADDED", body)


def test_a_watch_back_from_an_outage_is_healthy_only_once_it_shows_what_changed_meanwhile(
    kube_api: kubernetes.client.ApiClient, namespace: str, proxy: FaultyApiProxy, proxied_kubeconfig: Path
) -> None:
    """The reducers trust the pods in the cache while the pod watch is healthy (a Job complete for a minute whose
    pod still shows Running has lost its pod). A watch resumed after an outage is answered before the events it
    missed arrive; healthy from that moment, it let an EvalRun fail with NoSummary in CI. Healthy must wait for
    what changed during the outage."""
    core = kubernetes.client.CoreV1Api(kube_api)
    ours = {"labels": {LABEL_MANAGED_BY: MANAGED_BY}}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before", **ours}})  # type: ignore[arg-type]
    settings = OperatorSettings(watch_retry_seconds=0.2, retry_max_seconds=0.5)
    api = KubeApi(new_api_client(proxied_kubeconfig), OperatorMetrics(), settings)
    sink, stopping = _HealthAtArrival(), threading.Event()
    informer = Informer(api, next(w for w in WATCHED if w.kind == "ConfigMap"), namespace, sink, stopping)
    sink.informer = informer
    informer.start()
    try:
        wait_for(lambda: informer.healthy, timeout=30, what="the first list")
        assert sink.seen == {"before": False}

        proxy.fail(500, 3)  # cuts the watch; lists and watches are refused for 3 s
        wait_for(lambda: not informer.healthy, timeout=30, what="the watch to notice")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "during", **ours}})  # type: ignore[arg-type]
        wait_for(lambda: informer.healthy, timeout=30, what="the informer back")

        assert "during" in sink.seen, "healthy again without what was created during the outage"
        assert sink.seen["during"] is False, "claimed healthy before the outage's news arrived"
    finally:
        stopping.set()
        informer.stop()
