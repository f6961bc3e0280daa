"""A real Kubernetes control plane for the cluster tests, on free loopback ports.

`ControlPlane` starts etcd, kube-apiserver (client-certificate authentication,
`Node,RBAC` authorization, service-account tokens), kube-controller-manager
(only the controllers Jobs, namespaces, service accounts, garbage collection and
volumes need; never node-lifecycle, so fake nodes stay Ready without a kubelet)
and kube-scheduler, all built from source by `build-controlplane.sh`. It writes
an admin kubeconfig, waits for `/readyz`, installs the CRDs in
`manifests/crds/*.yaml` (if any) and waits until they are Established. `stop()`
kills every process group it started, also when start-up fails half way.

Run it by hand (binaries from the cache, fake GPU nodes and the pod executor
included unless --no-executor; --real-node for a real kubelet and containerd
instead, see real_node.py):

    python tests/cluster/kube_controlplane.py up --dir /tmp/cp [--real-node]
    python tests/cluster/kube_controlplane.py down --dir /tmp/cp
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import kube_apply
import kube_pki
import kubernetes.client
import kubernetes.config

logger = logging.getLogger(__name__)

K8S_VERSION = "v1.37.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "manifests" / "crds"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-controlplane.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

# Controllers the tests rely on. Deliberately absent: node-lifecycle (it would
# taint and evict the fake nodes, which have no kubelet heartbeat) and
# everything that needs a cloud or real nodes.
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "ttl-after-finished-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "replicaset-controller",
    "deployment-controller",
    "endpointslice-controller",
    "resourcequota-controller",
    "clusterrole-aggregation-controller",
)
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def controlplane_bin_dir() -> Path | None:
    """The cached binaries' directory if `build-controlplane.sh` already built them, else None.

    Asks the build script (which exits at once when the binaries exist) only if
    they are present, so this never starts a 30-minute build by surprise.
    """
    override = os.environ.get("COTLAB_CONTROLPLANE_BIN")
    if override:
        path = Path(override)
        return path if all((path / b).is_file() for b in BINARIES) else None
    cache = Path(os.environ.get("COTLAB_CACHE") or Path.home() / ".cache" / "cotlab") / "controlplane"
    module = BUILD_SCRIPT.parent / "controlplane"
    digest = hashlib.sha256((module / "go.mod").read_bytes() + (module / "go.sum").read_bytes()).hexdigest()
    path = cache / f"{K8S_VERSION}-{digest[:12]}" / "bin"
    return path if all(os.access(path / b, os.X_OK) for b in BINARIES) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when the parent dies, so a killed pytest leaves no servers behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler under one directory."""

    bin_dir: Path
    workdir: Path
    crd_dir: Path | None = CRD_DIR
    # CRDs installed before kube-controller-manager starts (Kueue's): its garbage collector discovers CRDs added
    # later only at its 30 s resync, so a deleted Job's Workload would linger with its quota.
    early_crd_dir: Path | None = None
    apiserver_port: int = 0
    # A real node's IP (real_node.RealNode): the apiserver listens on it too and advertises it, so pods reach it
    # through the `kubernetes` Service (kube-proxy) as in-cluster clients do.
    node_ip: str | None = None
    kubeconfig: Path = field(init=False)
    pki: Path = field(init=False)
    startup_seconds: float = field(init=False, default=0.0)
    crd_names: list[str] = field(init=False, default_factory=list)
    crd_errors: list[kube_apply.ApplyResult] = field(init=False, default_factory=list)
    _processes: list[_Process] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.pki = self.workdir / "pki"
        self.kubeconfig = self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubelet_serving(self) -> kube_pki.CertPair:
        """The serving certificate the pod executor presents as its nodes' kubelet endpoint."""
        return kube_pki.CertPair(self.pki / "kubelet-serving.crt", self.pki / "kubelet-serving.key")

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Start every component and wait until the API is ready; stops everything on failure."""
        began = time.monotonic()
        atexit.register(self.stop)
        try:
            self._start(deadline=began + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        logger.info("control plane ready", extra={"seconds": self.startup_seconds, "server": self.server})

    def _start(self, deadline: float) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self._make_pki()
        etcd_client, etcd_peer = free_port(), free_port()
        self.apiserver_port = self.apiserver_port or free_port()
        self._spawn("etcd", [
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--listen-metrics-urls=",
            # Test data is disposable; fsync dominates latency on CI disks.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ])  # fmt: skip
        self._wait_http(f"http://127.0.0.1:{etcd_client}/health", deadline, "etcd")
        pki = self.pki
        if self.node_ip is None:
            # A loopback address cannot back the `kubernetes` Service endpoints.
            address = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
        else:
            address = ["--bind-address=0.0.0.0", f"--advertise-address={self.node_ip}"]
        self._spawn("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            *address,
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The apiserver fetches logs from the pod executor's kubelet endpoint
            # with this identity; without --kubelet-certificate-authority it does
            # not verify the executor's certificate.
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            # TaintNodesByCondition would taint new nodes not-ready, and only the
            # (disabled) node-lifecycle controller lifts that taint.
            "--disable-admission-plugins=TaintNodesByCondition",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ])  # fmt: skip
        self._write_kubeconfigs()
        self._wait_apiserver(deadline)
        if self.early_crd_dir is not None:
            self._install_early_crds(deadline)
        kcm_port, sched_port = free_port(), free_port()
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.workdir / 'kube-controller-manager.kubeconfig'}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Tests create and delete many objects; sync them quickly.
            "--concurrent-job-syncs=10",
            "--concurrent-gc-syncs=10",
            "--concurrent-namespace-syncs=10",
            "--profiling=false",
            "--v=1",
        ])  # fmt: skip
        self._spawn("kube-scheduler", [
            f"--kubeconfig={self.workdir / 'kube-scheduler.kubeconfig'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            f"--cert-dir={self.workdir / 'scheduler-certs'}",
            "--profiling=false",
            "--v=1",
        ])  # fmt: skip
        self._wait_http(f"https://127.0.0.1:{kcm_port}/healthz", deadline, "kube-controller-manager")
        self._wait_http(f"https://127.0.0.1:{sched_port}/healthz", deadline, "kube-scheduler")
        self._wait_default_service_account(deadline)
        self.install_crds(deadline)

    def stop(self) -> None:
        """Kill every component's process group (SIGTERM, then SIGKILL after 2 s); idempotent.

        The data is disposable, so there is no point in waiting for kube-apiserver
        to drain connections gracefully (it can take many seconds).
        """
        for proc in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in reversed(self._processes):
            began = time.monotonic()
            try:
                proc.popen.wait(timeout=2)
                logger.debug("stopped", extra={"component": proc.name, "seconds": time.monotonic() - began})
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=5)
        self._processes.clear()
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- pieces --------------------------------------------------------------

    def _make_pki(self) -> None:
        ca = kube_pki.make_ca(self.pki)
        kube_pki.issue_cert(
            ca, self.pki, "apiserver", common_name="kube-apiserver", server=True,
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"),
            ip_addresses=("127.0.0.1", "10.96.0.1", *([self.node_ip] if self.node_ip else [])),
        )  # fmt: skip
        # system:masters for the components too: RBAC still applies to every
        # other identity (the operator's ServiceAccount is what the tests check).
        for name, cn in (
            ("admin", "cotlab-test-admin"),
            ("kube-controller-manager", "system:kube-controller-manager"),
            ("kube-scheduler", "system:kube-scheduler"),
            ("apiserver-kubelet-client", "kube-apiserver-kubelet-client"),
        ):
            kube_pki.issue_cert(ca, self.pki, name, common_name=cn, organizations=("system:masters",), client=True)
        kube_pki.issue_cert(
            ca, self.pki, "kubelet-serving", common_name="cotlab-pod-executor", server=True,
            dns_names=("localhost",), ip_addresses=("127.0.0.1",),
        )  # fmt: skip
        kube_pki.make_signing_key(self.pki, "sa")

    def _kubeconfig_text(self, user: str) -> str:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cotlab-test", "cluster": {
                "server": self.server, "certificate-authority-data": b64(self.pki / "ca.crt")}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": b64(self.pki / f"{user}.crt"),
                "client-key-data": b64(self.pki / f"{user}.key")}}],
            "contexts": [{"name": "cotlab-test", "context": {"cluster": "cotlab-test", "user": user}}],
            "current-context": "cotlab-test",
        }  # fmt: skip
        return json.dumps(config, indent=2)  # JSON is valid YAML

    def _write_kubeconfigs(self) -> None:
        self.kubeconfig.write_text(self._kubeconfig_text("admin"))
        self.kubeconfig.chmod(0o600)
        for user in ("kube-controller-manager", "kube-scheduler"):
            (self.workdir / f"{user}.kubeconfig").write_text(self._kubeconfig_text(user))

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
            )
        self._processes.append(_Process(name, popen, log))
        (self.workdir / f"{name}.pid").write_text(str(popen.pid))

    def _check_alive(self) -> None:
        for proc in self._processes:
            if proc.popen.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; log tail:\n{tail}")

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the test CA and presenting the admin certificate."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _wait_http(self, url: str, deadline: float, what: str, ctx: ssl.SSLContext | None = None) -> None:
        if ctx is None and url.startswith("https"):
            ctx = ssl._create_unverified_context()  # components' self-signed healthz certs
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.1)
        raise TimeoutError(f"{what} not healthy at {url}: {last}")

    def _wait_apiserver(self, deadline: float) -> None:
        self._wait_http(f"{self.server}/readyz", deadline, "kube-apiserver", self.ssl_context())

    def _api_get(self, path: str) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.server}{path}", timeout=5, context=self.ssl_context()) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def _wait_default_service_account(self, deadline: float) -> None:
        # Pods are rejected until their namespace's `default` ServiceAccount
        # exists; waiting here proves the controller-manager is working.
        while time.monotonic() < deadline:
            self._check_alive()
            if self._api_get("/api/v1/namespaces/default/serviceaccounts/default") is not None:
                return
            time.sleep(0.1)
        raise TimeoutError("the default ServiceAccount never appeared: is kube-controller-manager running?")

    def install_crds(self, deadline: float | None = None) -> list[str]:
        """Apply the CustomResourceDefinitions in `crd_dir` (server-side), wait until Established.

        Returns the CRD names. API rejections do not raise: they are kept in
        `crd_errors` so that a broken CRD fails the tests that need CRDs (the
        `crds` fixture), not the whole control plane. Other documents in the
        directory (a kustomization.yaml) are ignored.
        """
        self.crd_errors = []
        if self.crd_dir is None or not self.crd_dir.is_dir():
            return []
        docs = [d for d in kube_apply.load_manifests(self.crd_dir) if d.get("kind") == "CustomResourceDefinition"]
        if not docs:
            return []
        deadline = deadline if deadline is not None else time.monotonic() + 60
        with self.api_client() as api:
            results = kube_apply.apply_manifests(api, docs)
            self.crd_errors = [r for r in results if not r.ok]
            for error in self.crd_errors:
                logger.error("CRD rejected", extra={"crd": error.name, "status": error.status, "detail": error.message})
            names = [r.name for r in results if r.ok]
            _wait_established(api, names, deadline)
        self.crd_names = names
        return names

    def _install_early_crds(self, deadline: float) -> None:
        assert self.early_crd_dir is not None
        docs = [d for d in kube_apply.load_manifests(self.early_crd_dir) if d.get("kind") == "CustomResourceDefinition"]
        with self.api_client() as api:
            # Server-side: Kueue's Workload CRD (1.4 MB) is too large for client-side apply's annotation.
            failed = [r for r in kube_apply.apply_manifests(api, docs) if not r.ok]
            if failed:
                raise RuntimeError(f"early CRDs rejected: {failed}")
            _wait_established(api, [d["metadata"]["name"] for d in docs], deadline)

    @contextlib.contextmanager
    def api_client(self) -> Iterator[kubernetes.client.ApiClient]:
        """A `kubernetes.client.ApiClient` for the admin user, closed on exit."""
        client = new_api_client(self.kubeconfig)
        try:
            yield client
        finally:
            client.close()  # type: ignore[no-untyped-call]


def _wait_established(api: kubernetes.client.ApiClient, names: list[str], deadline: float) -> None:
    """Wait until each named CRD is Established (served), or raise at `deadline`."""
    ext = kubernetes.client.ApiextensionsV1Api(api)
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established")
            time.sleep(0.1)


def new_api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    """An ApiClient built from `kubeconfig` (never touches the global default configuration)."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return kubernetes.client.ApiClient(configuration)


def _cmd_up(args: argparse.Namespace) -> int:
    bin_dir = Path(args.bin_dir) if args.bin_dir else controlplane_bin_dir()
    if bin_dir is None:
        print(f"binaries missing: run `bash {BUILD_SCRIPT}` first", file=sys.stderr)
        return 1
    if args.real_node:
        import real_cluster

        cluster = real_cluster.RealCluster.start(bin_dir, Path(args.dir))
        plane, stop_node = cluster.plane, cluster.node.stop
        print(f"real node up; images: {', '.join(cluster.images.values())}", file=sys.stderr)
    else:
        plane, stop_node = ControlPlane(bin_dir=bin_dir, workdir=Path(args.dir)), None
        plane.start()
    executor = None
    if not args.no_executor and not args.real_node:
        import pod_executor

        api = new_api_client(plane.kubeconfig)
        executor = pod_executor.PodExecutor(
            api, root=plane.workdir / "pods", tls=plane.kubelet_serving, node_names=pod_executor.DEFAULT_NODES
        )
        executor.start()
    for error in plane.crd_errors:
        print(f"CRD {error.name} rejected ({error.status}): {error.message}", file=sys.stderr)
    print(f"control plane up in {plane.startup_seconds:.1f}s", file=sys.stderr)
    print(plane.kubeconfig, flush=True)
    (plane.workdir / "up.pid").write_text(str(os.getpid()))
    stop = False

    def _handle(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    while not stop:
        time.sleep(0.2)
    if executor is not None:
        executor.stop()
    if stop_node is not None:
        stop_node()
    plane.stop()
    (plane.workdir / "up.pid").unlink(missing_ok=True)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    pid_file = Path(args.dir) / "up.pid"
    if not pid_file.exists():
        print(f"nothing running under {args.dir}", file=sys.stderr)
        return 1
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.1)
    print(f"`up` (pid {pid}) did not exit", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane and wait for SIGINT/SIGTERM or `down`")
    up.add_argument("--dir", required=True, help="working directory (PKI, etcd data, logs, kubeconfig)")
    up.add_argument("--bin-dir", help="directory with the four binaries (default: the build cache)")
    up.add_argument("--no-executor", action="store_true", help="no fake GPU nodes and no pod executor")
    up.add_argument(
        "--real-node",
        action="store_true",
        help="instead of the fake nodes: a real node (kubelet, containerd, CNI, kube-proxy, CoreDNS) and a registry"
        " on localhost:5000 holding the operator and trainer images (needs root; see real_node.py)",
    )
    down = sub.add_parser("down", help="stop a control plane started with `up --dir`")
    down.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return _cmd_up(args) if args.command == "up" else _cmd_down(args)


if __name__ == "__main__":
    sys.exit(main())
