"""Throw-away PKI for the test control plane, made with the `openssl` command.

The test cluster needs a CA, serving certificates (kube-apiserver, the pod
executor's kubelet endpoint), client certificates (admin, controller-manager,
scheduler, the apiserver's kubelet client) and a service-account signing key.
`openssl` is used rather than the `cryptography` package so the test
environment needs no extra Python dependency; every Debian-based image has it.
EC P-256 keys are used throughout because they are generated in milliseconds.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
_DAYS = "30"


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key, both PEM files."""

    cert: Path
    key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args[:2]))} failed: {result.stderr.strip()}")


def make_ca(directory: Path, name: str = "ca") -> CertPair:
    """Create a self-signed CA in `directory` as `<name>.crt` / `<name>.key`."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    _openssl(
        "req", "-x509", *_CURVE, "-nodes", "-keyout", pair.key, "-out", pair.cert, "-days", _DAYS,
        "-subj", f"/CN=cotlab-test-{name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )  # fmt: skip
    return pair


def issue_cert(
    ca: CertPair,
    directory: Path,
    name: str,
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
) -> CertPair:
    """Issue a leaf certificate signed by `ca`, written as `<name>.crt` / `<name>.key`."""
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    subject = "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"
    _openssl("req", "-new", *_CURVE, "-nodes", "-keyout", pair.key, "-subj", subject, "-out", csr, cwd=directory)
    usages = [u for u, wanted in (("serverAuth", server), ("clientAuth", client)) if wanted]
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    sans = [f"DNS:{d}" for d in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
    if sans:
        extensions.append(f"subjectAltName={','.join(sans)}")
    extfile = directory / f"{name}.ext"
    extfile.write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
        "-set_serial", str(secrets.randbits(63)), "-days", _DAYS, "-out", pair.cert, "-extfile", extfile,
        cwd=directory,
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()
    return pair


def make_signing_key(directory: Path, name: str = "sa") -> CertPair:
    """Create an EC key pair for service-account tokens: `<name>.key` and `<name>.pub` (in `cert`)."""
    pair = CertPair(directory / f"{name}.pub", directory / f"{name}.key")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", pair.key, cwd=directory)
    _openssl("pkey", "-in", pair.key, "-pubout", "-out", pair.cert, cwd=directory)
    return pair
