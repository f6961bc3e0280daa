"""cotctl's own kubeconfig reading (the read path without the kubernetes client): kubectl's rules, and when it
hands over to the kubernetes client. The TLS and token paths against a real API server are in
tests/cluster/test_cli_cluster.py."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cotlab.cli.cluster.kube import Cluster, ClusterError, Target
from cotlab.cli.cluster.kubeconfig import KubeconfigError, load
from cotlab.cli.main import app


def write(path: Path, current: str | None, clusters: dict[str, Any], users: dict[str, Any],
          contexts: dict[str, Any]) -> Path:  # fmt: skip
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": c} for n, c in contexts.items()],
    }
    if current:
        config["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubeconfig_list_merges_as_kubectl_first_name_and_first_current_context_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path / "a" / "config", None, {"c": {"server": "https://first:6443"}}, {"u": {"token": "one"}},
                  {"lab": {"cluster": "c", "user": "u", "namespace": "team"}})  # fmt: skip
    (tmp_path / "b" / "token").parent.mkdir()
    (tmp_path / "b" / "token").write_text("from-file\n")
    second = write(tmp_path / "b" / "config", "prod",
                   {"c": {"server": "https://second:6443"}, "p": {"server": "https://prod:6443"}},
                   {"u": {"token": "two"}, "pu": {"tokenFile": "token"}},
                   {"lab": {"cluster": "p", "user": "pu"}, "prod": {"cluster": "p", "user": "pu"}})  # fmt: skip
    missing = tmp_path / "none"
    monkeypatch.setenv("KUBECONFIG", f"{first}:{missing}:{second}")

    prod = load(None, None)  # current-context only the second file sets
    assert prod is not None and prod.server == "https://prod:6443"
    assert prod.token == "from-file"  # tokenFile relative to the file that names it
    assert prod.namespace is None
    lab = load(None, "lab")  # "lab", "c" and "u" from the first file, which wins
    assert lab is not None and (lab.server, lab.token, lab.namespace) == ("https://first:6443", "one", "team")
    with pytest.raises(KubeconfigError, match='context "staging" not found'):
        load(None, "staging")


def test_what_only_the_kubernetes_client_can_do_is_handed_to_it(tmp_path: Path) -> None:
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}
    cases = {
        "exec": ({"server": "https://x"}, exec_user),
        "auth-provider": ({"server": "https://x"}, {"auth-provider": {"name": "oidc"}}),
        "impersonation": ({"server": "https://x"}, {"token": "t", "as": "admin"}),
        "basic": ({"server": "https://x"}, {"username": "u", "password": "p"}),
        "proxy": ({"server": "https://x", "proxy-url": "http://proxy:3128"}, {"token": "t"}),
        "server name": ({"server": "https://x", "tls-server-name": "api"}, {"token": "t"}),
    }
    for case, (cluster, user) in cases.items():
        context = {"ctx": {"cluster": "c", "user": "u"}}
        path = write(tmp_path / case / "config", "ctx", {"c": cluster}, {"u": user}, context)
        assert load(path, None) is None, case
    plain = write(tmp_path / "plain", "ctx", {"c": {"server": "https://x"}}, {"u": {"token": "t"}},
                  {"ctx": {"cluster": "c", "user": "u"}})  # fmt: skip
    assert load(plain, None) is not None
    assert load(tmp_path / "absent", None) is None  # the client then names the missing file


def test_certificate_paths_are_relative_to_their_file_and_data_is_base64(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "client.crt").write_bytes(b"CERT")
    path = write(tmp_path / "config", "ctx",
                 {"c": {"server": "https://x", "certificate-authority": "pki/ca.crt"}},
                 {"u": {"client-certificate": "pki/client.crt",
                        "client-key-data": base64.b64encode(b"KEY").decode()}},
                 {"ctx": {"cluster": "c", "user": "u"}})  # fmt: skip
    credentials = load(path, None)
    assert credentials is not None
    assert credentials.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert (credentials.client_cert, credentials.client_key) == (b"CERT", b"KEY")
    broken = write(tmp_path / "broken", "ctx", {"c": {"server": "https://x", "certificate-authority-data": "%%"}},
                   {"u": {}}, {"ctx": {"cluster": "c", "user": "u"}})  # fmt: skip
    with pytest.raises(KubeconfigError, match="certificate-authority-data is not base64"):
        load(broken, None)


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path.endswith("/evalruns/gone"):
            body = {"kind": "Status", "reason": "NotFound", "details": {"name": "gone"}, "code": 404}
            self.send_response(404)
        else:
            body = {"kind": "EvalRunList", "items": [{"metadata": {"name": "e", "namespace": "team"}}]}
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_requests_keep_the_servers_path_prefix_send_the_token_and_name_what_was_not_found(
    tmp_path: Path, recorder: str
) -> None:
    """A server URL with a path (Rancher's /k8s/clusters/<id>) prefixes every request."""
    path = write(tmp_path / "config", "ctx", {"c": {"server": f"{recorder}/k8s/clusters/c-1"}}, {"u": {"token": "s3"}},
                 {"ctx": {"cluster": "c", "user": "u", "namespace": "team"}})  # fmt: skip
    cluster = Cluster.connect(Target(kubeconfig=path))
    items = cluster.list_resources("EvalRun", namespace="team", selector="cotlab.dev/arm=qwq")
    assert items == [{"metadata": {"name": "e", "namespace": "team"}, "apiVersion": "cotlab.dev/v1alpha1",
                      "kind": "EvalRun"}]  # fmt: skip
    with pytest.raises(ClusterError, match='evalruns.cotlab.dev "gone" not found in namespace "team"'):
        cluster.get_resource("EvalRun", "team", "gone")
    assert _Recorder.seen == [
        ("/k8s/clusters/c-1/apis/cotlab.dev/v1alpha1/namespaces/team/evalruns?labelSelector=cotlab.dev%2Farm%3Dqwq",
         "Bearer s3"),
        ("/k8s/clusters/c-1/apis/cotlab.dev/v1alpha1/namespaces/team/evalruns/gone", "Bearer s3"),
    ]  # fmt: skip
    assert cluster._client is None  # the kubernetes client was never needed


def test_a_missing_context_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "config", None, {"c": {"server": "https://x"}}, {"u": {"token": "t"}},
                 {"ctx": {"cluster": "c", "user": "u"}})  # fmt: skip
    result = CliRunner().invoke(app, ["status", "--kubeconfig", str(path)])
    assert result.exit_code == 1
    said = f"Error: no usable kubeconfig ({path}): no current-context is set; pass --context"
    assert result.stderr.splitlines()[0] == said
