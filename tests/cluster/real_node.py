"""A real node beside the test control plane: kubelet, containerd with runc, CNI, kube-proxy, CoreDNS, a registry.

Everything the fake nodes of `pod_executor` leave out, a real kubelet does: it pulls the pod's image (from a
local registry, as a cluster pulls from its registry), runs the image's own entry point in containerd under runc,
applies the securityContext and the read-only root, mounts the service-account token, and resolves
`<job>-0.<service>.<ns>.svc` names through CoreDNS. The binaries come from `build-node.sh` (kubelet and
kube-proxy from the control plane's Kubernetes version; containerd 2, CoreDNS and the registry from their Go
modules); runc and the CNI plugins are Debian's.

Layout, chosen for a single-machine test cluster:
- the node is this machine: its primary IPv4 address is the node's InternalIP, and the apiserver listens on it
  (`ControlPlane(node_ip=...)`), so the `kubernetes` Service reaches it from pods through kube-proxy;
- pods get addresses from 10.244.0.0/24 on the bridge `cotlab0` (bridge, host-local, portmap);
- CoreDNS runs on the host, on the node IP's port 53, and the kubelet hands that address to pods as their DNS;
- the registry listens on 127.0.0.1:5000 (`localhost:5000/...` images, plain HTTP, as kind's local registry);
  containerd pulls from it, nothing is side-loaded; its store is kept beside the cached binaries, so a push
  sends only changed layers;
- the pod sandbox's image (pause) is built from its C source and pushed there on first start.

Every process is killed on `stop()` (or when the test process dies), and the bridge and kube-proxy's rules are
removed. The kubelet's eviction and image-GC thresholds are turned down: the node shares the machine's disk with
everything else, and evicting a test's pods for that would test nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import kube_pki
from kube_controlplane import ControlPlane, _die_with_parent, free_port

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-node.sh"
NODE_NAME = "cotlab-node"
POD_CIDR = "10.244.0.0/24"
BRIDGE = "cotlab0"
REGISTRY = "localhost:5000"
PAUSE_IMAGE = f"{REGISTRY}/cotlab/pause:3.10"
CNI_BIN = Path("/usr/lib/cni")


def node_bin_dir() -> Path:
    """The node's binaries: `build-node.sh` builds them once (minutes) and prints the cached folder."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"build-node.sh failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def primary_ip() -> str:
    """This machine's IPv4 address on its default route (no packet is sent: UDP connect only picks a route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.254", 9))
        address: str = sock.getsockname()[0]
    if address.startswith("127."):
        raise RuntimeError("the real node needs a non-loopback IPv4 address (none on the default route)")
    return address


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class RealNode:
    """The node `NODE_NAME`, registered with `plane`, whose pods run in containerd under runc."""

    plane: ControlPlane
    bin_dir: Path
    workdir: Path
    node_ip: str
    startup_seconds: float = field(init=False, default=0.0)
    _processes: list[_Process] = field(init=False, default_factory=list)
    # containerd's sockets (its own and its shims') must fit a unix socket path: a short folder of their own.
    _run_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self._run_dir = Path(tempfile.mkdtemp(prefix="cotlab-node-", dir="/run"))

    @property
    def registry_store(self) -> Path:
        """The registry's blobs, beside the node's cached binaries: kept from one node to the next."""
        return self.bin_dir.parent / "registry"

    @property
    def containerd_socket(self) -> Path:
        return self._run_dir / "containerd.sock"

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        began = time.monotonic()
        try:
            self._start(deadline=began + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _start(self, deadline: float) -> None:
        for folder in ("logs", "pki", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "certs.d"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        self._issue_certificates()
        self._start_registry(deadline)
        self._push_pause_image()
        self._start_containerd(deadline)
        self._start_kubelet(deadline)
        self._start_kube_proxy(deadline)
        self._start_coredns(deadline)

    def stop(self) -> None:
        """Kill every process this node started (SIGTERM, SIGKILL after 5 s), then remove its network state."""
        for proc in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in reversed(self._processes):
            try:
                proc.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=5)
        self._processes.clear()
        self._kill_leftover_containers()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([str(self.bin_dir / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, timeout=30)
        # Gigabytes of unpacked image layers: gone with the node (test runs keep their temp dirs). The registry's
        # store stays (see _start_registry).
        for root in (self.workdir, self._run_dir):
            with contextlib.suppress(OSError):
                self._unmount_under(root)
        for folder in (self.workdir / "containerd", self.workdir / "kubelet", self._run_dir):
            shutil.rmtree(folder, ignore_errors=True)

    def _kill_leftover_containers(self) -> None:
        """Shims and containers outlive containerd by design: stop the ones this node started."""
        state = self._run_dir / "runc"
        if not state.is_dir():
            return
        for namespace in state.iterdir():
            for container in namespace.iterdir():
                subprocess.run(
                    ["runc", "--root", str(namespace), "kill", container.name, "KILL"], capture_output=True, timeout=30
                )
                subprocess.run(
                    ["runc", "--root", str(namespace), "delete", "--force", container.name],
                    capture_output=True,
                    timeout=30,
                )
        subprocess.run(["pkill", "-KILL", "-f", f"containerd-shim-runc-v2.*{self._run_dir}"], capture_output=True)

    @staticmethod
    def _unmount_under(root: Path) -> None:
        """The kubelet's volume mounts (tmpfs, projected tokens) under its root, deepest first."""
        mounts = [
            line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines() if len(line.split()) > 1
        ]
        for mount in sorted((m for m in mounts if m.startswith(str(root))), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)

    # -- pieces --------------------------------------------------------------------------------------------------

    def _issue_certificates(self) -> None:
        ca = kube_pki.CertPair(self.plane.pki / "ca.crt", self.plane.pki / "ca.key")
        pki = self.workdir / "pki"
        # The Node authorizer and NodeRestriction know a kubelet by this name and group.
        kube_pki.issue_cert(
            ca, pki, "kubelet", common_name=f"system:node:{NODE_NAME}", organizations=("system:nodes",), client=True
        )
        kube_pki.issue_cert(
            ca, pki, "kubelet-serving", common_name=NODE_NAME, server=True,
            dns_names=(NODE_NAME, "localhost"), ip_addresses=(self.node_ip, "127.0.0.1"),
        )  # fmt: skip
        kube_pki.issue_cert(ca, pki, "kube-proxy", common_name="system:kube-proxy", client=True)
        kube_pki.issue_cert(
            ca, pki, "coredns", common_name="cotlab-coredns", organizations=("system:masters",), client=True
        )
        for user in ("kubelet", "kube-proxy", "coredns"):
            (self.workdir / f"{user}.kubeconfig").write_text(self._kubeconfig(user))

    def _kubeconfig(self, user: str) -> str:
        pki = self.workdir / "pki"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cotlab-test", "cluster": {
                "server": self.plane.server, "certificate-authority": str(self.plane.pki / "ca.crt")}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")}}],
            "contexts": [{"name": "cotlab-test", "context": {"cluster": "cotlab-test", "user": user}}],
            "current-context": "cotlab-test",
        }  # fmt: skip
        return json.dumps(config, indent=2)

    def _start_registry(self, deadline: float) -> None:
        host, port = REGISTRY.split(":")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", int(port))) == 0:
                raise RuntimeError(f"port {port} is taken: the real node's registry listens on {REGISTRY}")
        config = {
            "version": "0.1",
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.registry_store)}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "debug": {"addr": f"127.0.0.1:{free_port()}"}},
        }
        path = self.workdir / "registry.yaml"
        path.write_text(json.dumps(config))
        # The store outlives the node, so a push sends only the layers that changed (podman's blob-info cache
        # knows which compressed blobs the registry holds): the trainer image's 6 GB took most of a minute to
        # compress and send to an empty one. Each push re-tags the same version, leaving the previous manifest
        # untagged: collected here, before serving (the registry must not run while it collects).
        self.registry_store.mkdir(parents=True, exist_ok=True)
        collected = subprocess.run(
            [str(self.bin_dir / "registry"), "garbage-collect", "--delete-untagged", str(path)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if collected.returncode != 0:  # a store it cannot read: start from an empty one rather than fail the node
            logger.warning("registry garbage-collect failed, emptying the store: %s", collected.stderr[-2000:])
            shutil.rmtree(self.registry_store, ignore_errors=True)
            self.registry_store.mkdir(parents=True)
        self._spawn("registry", ["serve", str(path)])
        self._wait(lambda: _http_ok(f"http://{REGISTRY}/v2/"), deadline, "the registry")

    def _push_pause_image(self) -> None:
        """The sandbox image, from the pause binary: a one-file image, built with buildah and pushed."""
        env = {**os.environ, "CONTAINERS_CONF": str(HERE.parents[1] / "images" / "containers.conf")}

        def buildah(*args: str) -> str:
            done = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=300, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"buildah {' '.join(args)}: {done.stderr}")
            return done.stdout.strip()

        try:
            buildah("inspect", "--type", "image", PAUSE_IMAGE)
        except RuntimeError:
            container = buildah("from", "scratch")
            try:
                buildah("copy", container, str(self.bin_dir / "pause"), "/pause")
                buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
                buildah("commit", "--quiet", "--timestamp", "0", container, PAUSE_IMAGE)
            finally:
                buildah("rm", container)
        buildah("push", "--quiet", "--tls-verify=false", PAUSE_IMAGE, f"docker://{PAUSE_IMAGE}")

    def _start_containerd(self, deadline: float) -> None:
        registry_hosts = self.workdir / "certs.d" / REGISTRY
        registry_hosts.mkdir(parents=True, exist_ok=True)
        (registry_hosts / "hosts.toml").write_text(
            f'server = "http://{REGISTRY}"\n\n[host."http://{REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        cni = {
            "cniVersion": "1.0.0",
            "name": "cotlab",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,  # a pod reaching itself through a Service address
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.workdir / "cni" / "net.d" / "10-cotlab.conflist").write_text(json.dumps(cni, indent=2))
        runc = shutil.which("runc") or "/usr/sbin/runc"
        config = f"""
version = 3
root = "{self.workdir / "containerd"}"
state = "{self._run_dir}/state"

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self._run_dir}/ttrpc.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{self.workdir / "certs.d"}"

[plugins.'io.containerd.cri.v1.runtime']
  # The sandbox asks for oom_score_adj -998, and lowering it needs CAP_SYS_RESOURCE, which this VM's root lacks
  # (runc init dies: "can't get final child's PID from pipe"); clamp to containerd's own score instead.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "{runc}"
      Root = "{self._run_dir}/runc"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{self.workdir / "cni" / "net.d"}"
"""
        path = self.workdir / "containerd.toml"
        path.write_text(config)
        self._spawn("containerd", ["--config", str(path)])
        self._wait(self.containerd_socket.exists, deadline, "containerd's socket")

    def _start_kubelet(self, deadline: float) -> None:
        pki = self.workdir / "pki"
        healthz = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This VM has cgroup v1 (hybrid); the 1.37 kubelet refuses it unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.pki / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},  # only the apiserver's client certificate gets this far
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "clusterDomain": "cluster.local",
            "clusterDNS": [self.node_ip],
            "failSwapOn": False,
            # The node shares the machine's disk with the build caches: do not evict pods or delete images for it.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "staticPodPath": "",
            "volumePluginDir": str(self.workdir / "kubelet-plugins"),
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(json.dumps(config, indent=2))
        self._spawn("kubelet", [
            f"--config={path}",
            f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.workdir / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.node_ip}",
            "--v=1",
        ])  # fmt: skip
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{healthz}/healthz"), deadline, "the kubelet")
        self._wait(self._node_ready, deadline, f"node {NODE_NAME} to be Ready")

    def _node_ready(self) -> bool:
        node = self.plane._api_get(f"/api/v1/nodes/{NODE_NAME}")
        conditions = (node or {}).get("status", {}).get("conditions", [])  # type: ignore[union-attr]
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _start_kube_proxy(self, deadline: float) -> None:
        healthz = free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.workdir / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the machine's conntrack table size alone (it is not ours to set).
            "conntrack": {"maxPerCore": 0, "min": 0},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [f"--config={path}", "--v=1"])
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{healthz}/healthz"), deadline, "kube-proxy")

    def _start_coredns(self, deadline: float) -> None:
        health = free_port()
        corefile = f"""
.:53 {{
    bind {self.node_ip}
    errors
    health 127.0.0.1:{health}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.workdir / "coredns.kubeconfig"}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . /etc/resolv.conf
    cache 5
}}
"""
        path = self.workdir / "Corefile"
        path.write_text(corefile)
        self._spawn("coredns", ["-conf", str(path)])
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{health}/health"), deadline, "CoreDNS")

    # -- processes -----------------------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        env = {**os.environ, "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '')}"}  # containerd finds its shim
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads are started before this
            )
        self._processes.append(_Process(name, popen, log))

    def _check_alive(self) -> None:
        for proc in self._processes:
            if proc.popen.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; log tail:\n{tail}")

    def _wait(self, check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            self._check_alive()
            if check():
                return
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}")

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
