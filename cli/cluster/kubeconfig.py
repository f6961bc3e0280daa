"""Reading a kubeconfig the way kubectl does, for cotctl's read-only requests, without the kubernetes client.

Why not the kubernetes client here: importing it takes about 0.4 s (its package imports every API model),
which alone is twice what `kubectl get` takes in total (bench/cli_status.py). Listing and getting cotlab's
resources needs only a TLS connection and a bearer token or client certificate, which the standard library has.
Anything else a kubeconfig can ask for (exec credential plugins, auth providers, impersonation, basic auth,
proxies, a TLS server name) is left to the kubernetes client: `load` returns None and the caller uses it.

The rules follow kubectl's (client-go `clientcmd`): `--kubeconfig`, else every file in $KUBECONFIG (the first to
define a name wins, the first current-context wins, missing files are skipped), else ~/.kube/config; relative
paths are relative to the file that holds them; `--context` picks a context, else current-context.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

# libyaml's safe loader where PyYAML was built with it (its wheels are): the same YAML, ~10x faster than the
# pure-Python one on a kubeconfig with embedded certificates.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Fields of a user or cluster that only the kubernetes client handles.
_CLIENT_ONLY_USER = ("exec", "auth-provider", "as", "as-groups", "as-uid", "username", "password")
_CLIENT_ONLY_CLUSTER = ("proxy-url", "tls-server-name")


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be used; the message names the file, context or field."""


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are, for the standard library's HTTP client."""

    server: str
    namespace: str | None
    token: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    client_cert: bytes | None = None  # PEM, read now: a path in the kubeconfig may be rotated underneath us
    client_key: bytes | None = None
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None
        )
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert and self.client_key:
            # `load_cert_chain` reads only files: write the PEMs to a private temporary folder and remove it
            # at once (the key is loaded into the context by then).
            with tempfile.TemporaryDirectory(prefix="cotctl-") as folder:
                cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
                for path, data in ((cert, self.client_cert), (key, self.client_key)):
                    path.touch(mode=0o600)
                    path.write_bytes(data)
                context.load_cert_chain(cert, key)
        return context

    @property
    def base(self) -> tuple[str, str, str]:
        """(scheme, host:port, path prefix) of the server URL (Rancher-style servers have a path)."""
        parts = urlsplit(self.server)
        return parts.scheme or "https", parts.netloc, parts.path.rstrip("/")


def config_files(kubeconfig: Path | None) -> list[Path]:
    if kubeconfig is not None:
        return [kubeconfig]
    listed = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return [p for p in listed if p.is_file()]
    return [Path.home() / ".kube" / "config"]


def merged(files: list[Path]) -> dict[str, Any]:
    """The files merged as kubectl merges them; named entries remember the folder their relative paths are in."""
    result: dict[str, Any] = {"current-context": None, "clusters": {}, "users": {}, "contexts": {}}
    for path in files:
        try:
            loaded = yaml.load(path.read_text(), Loader=_LOADER) or {}
        except (OSError, yaml.YAMLError) as err:
            raise KubeconfigError(f"{path}: {err}") from None
        if not isinstance(loaded, dict):
            raise KubeconfigError(f"{path}: not a kubeconfig (a YAML mapping)")
        result["current-context"] = result["current-context"] or loaded.get("current-context")
        for section, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in loaded.get(section) or []:
                name = entry.get("name")
                if name is not None and name not in result[section]:
                    result[section][name] = (entry.get(key) or {}, path.parent)
    return result


def _data(value: Any, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise KubeconfigError(f"{field} is not base64") from None


def _file(folder: Path, value: Any) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else folder / path


def _pem(entry: dict[str, Any], folder: Path, name: str) -> bytes | None:
    if entry.get(f"{name}-data"):
        return _data(entry[f"{name}-data"], f"{name}-data")
    if entry.get(name):
        return _file(folder, entry[name]).read_bytes()
    return None


def load(kubeconfig: Path | None, context: str | None) -> Credentials | None:
    """The credentials of `context` (else the current one), or None when only the kubernetes client can use them.

    Raises KubeconfigError for a kubeconfig that nothing could use (missing file, unknown context)."""
    files = config_files(kubeconfig)
    if not files or not all(f.is_file() for f in files):
        return None  # no file (maybe in-cluster config): the kubernetes client decides and explains
    config = merged(files)
    chosen = context or config["current-context"]
    if not chosen:
        raise KubeconfigError("no current-context is set; pass --context")
    if chosen not in config["contexts"]:
        raise KubeconfigError(f'context "{chosen}" not found')
    ctx, _ = config["contexts"][chosen]
    cluster, cluster_folder = config["clusters"].get(ctx.get("cluster"), (None, None))
    user, user_folder = config["users"].get(ctx.get("user"), ({}, Path()))
    if cluster is None or not cluster.get("server"):
        raise KubeconfigError(f'context "{chosen}": cluster "{ctx.get("cluster")}" has no server')
    if any(user.get(f) for f in _CLIENT_ONLY_USER) or any(cluster.get(f) for f in _CLIENT_ONLY_CLUSTER):
        return None
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _file(user_folder, user["tokenFile"]).read_text().strip()
    ca_file = None
    if cluster.get("certificate-authority") and not cluster.get("certificate-authority-data"):
        ca_file = str(_file(cluster_folder, cluster["certificate-authority"]))
    return Credentials(
        server=str(cluster["server"]),
        namespace=ctx.get("namespace"),
        token=token or None,
        ca_file=ca_file,
        ca_data=_data(cluster["certificate-authority-data"], "certificate-authority-data")
        if cluster.get("certificate-authority-data")
        else None,
        client_cert=_pem(user, user_folder, "client-certificate"),
        client_key=_pem(user, user_folder, "client-key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )
