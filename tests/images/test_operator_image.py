"""The operator image starts under the install's Deployment security settings, is labelled, and stays small.
(tests/cluster/test_operator_image.py runs it against the control plane.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .podman import REPO, PodmanPod, operator_pod_spec, podman

MAX_OPERATOR_IMAGE_BYTES = 250 * 1000 * 1000  # the operator image's size budget (README, "Images")


def test_the_operator_image_starts_under_the_deployments_security_settings(
    images: dict[str, str], tmp_path: Path
) -> None:
    pod_spec = operator_pod_spec()
    pod = PodmanPod(image=images["operator"], pod_spec=pod_spec, workdir=tmp_path, args=["--help"])
    argv = pod.argv()
    assert {"--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--user=65532:65532"} <= set(argv)
    done = pod.run(timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m cotlab.operator" in done.stdout


def test_the_images_are_labelled_with_source_revision_and_version(images: dict[str, str]) -> None:
    revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    for ref in images.values():
        labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", ref).stdout)
        assert labels["org.opencontainers.image.version"] == ref.rsplit(":", 1)[1]
        assert labels["org.opencontainers.image.revision"].startswith(revision.strip())
        assert labels["org.opencontainers.image.source"].startswith("https://")


def test_the_operator_image_stays_within_its_size_budget(images: dict[str, str]) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", images["operator"]).stdout)
    assert size <= MAX_OPERATOR_IMAGE_BYTES, f"{size / 1e6:.0f} MB"
