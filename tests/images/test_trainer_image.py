"""The trainer image runs the curate stage of a TraceDataset the way the operator builds its pod: the pod spec
from the operator's builders, the container started by podman with that pod's security settings (uid 65532,
read-only root, no capabilities, no privilege escalation), no network."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from cotlab.api.podcontract import Inputs, decode_summary, parse_marker
from cotlab.api.validation import parse_resource
from cotlab.operator.builders import build_children
from cotlab.operator.settings import OperatorSettings

from .podman import REPO, PodmanPod, podman

CLAIM = "cotlab-artifacts"
ROWS = [
    {"problem": f"What is {a} + {b}?", "solution": f"{a} + {b} = {a + b}. So the answer is $\\boxed{{{a + b}}}$.",
     "answer": str(a + b)}
    for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]
]  # fmt: skip


def tracedataset(count: int) -> dict[str, object]:
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "TraceDataset",
        "metadata": {"name": "sums", "namespace": "team-a", "uid": "5e1f0000-0000-4000-8000-000000000001",
                     "generation": 1},
        "spec": {
            "source": {"uri": f"pvc://{CLAIM}/inputs/traces.jsonl"},
            "fields": {"problem": "problem", "solution": "solution", "answer": "answer"},
            "select": {"count": count, "seed": 0, "strategy": "random"},
        },
    }  # fmt: skip


def pod_for(doc: dict[str, object], image: str, workdir: Path) -> PodmanPod:
    resource = parse_resource(doc)
    settings = OperatorSettings(trainer_image=image, artifact_root=f"pvc://{CLAIM}/")
    children = build_children(resource, Inputs(), settings)
    job = children.job
    config_map = children.config_map
    return PodmanPod(
        image=job["spec"]["template"]["spec"]["containers"][0]["image"],
        pod_spec=job["spec"]["template"]["spec"],
        workdir=workdir,
        config_maps={config_map["metadata"]["name"]: config_map["data"]},
    )


def test_the_trainer_image_curates_a_dataset_as_the_operators_pod(images: dict[str, str], tmp_path: Path) -> None:
    pod = pod_for(tracedataset(count=4), images["trainer"], tmp_path)
    assert pod.image == images["trainer"]  # the builders chose the trainer image for curation
    inputs = pod.claim_dir(CLAIM) / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))

    done = pod.run(timeout=600)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = decode_summary(pod.termination_log.read_text())
    assert summary is not None and summary["stage"] == "curate" and summary["count"] == 4, summary
    uri = summary["artifact"]["uri"]
    assert uri.startswith(f"pvc://{CLAIM}/team-a/tracedatasets/sums/5e1f0000/"), uri
    written = pod.claim_dir(CLAIM) / uri.removeprefix(f"pvc://{CLAIM}/")
    assert summary["artifact"]["digest"] == "sha256:" + hashlib.sha256(written.read_bytes()).hexdigest()
    assert len(written.read_text().splitlines()) == 4
    markers = [m for m in map(parse_marker, done.stdout.splitlines()) if m is not None]
    assert markers and markers[-1]["selected"] == 4


def test_a_bad_trace_line_fails_with_the_permanent_exit_code_and_names_the_line(
    images: dict[str, str], tmp_path: Path
) -> None:
    pod = pod_for(tracedataset(count=2), images["trainer"], tmp_path)
    inputs = pod.claim_dir(CLAIM) / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "traces.jsonl").write_text(json.dumps(ROWS[0]) + "\n{not json\n")

    done = pod.run(timeout=600)

    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]  # ExitCode.INVALID_INPUT
    summary = decode_summary(pod.termination_log.read_text())
    assert summary is not None and "line 2" in summary["error"], summary


@pytest.mark.parametrize("path", ["/opt/cotlab/venv/written", "/etc/written", "/written"])
def test_the_pods_root_filesystem_is_read_only(images: dict[str, str], tmp_path: Path, path: str) -> None:
    pod = pod_for(tracedataset(count=1), images["trainer"], tmp_path)
    probe = PodmanPod(
        image=pod.image,
        pod_spec={**pod.pod_spec, "containers": [{**pod.container, "command": ["python", "-c"], "args": []}]},
        workdir=tmp_path,
        config_maps=pod.config_maps,
        args=[f"open({path!r}, 'w')"],
    )
    done = probe.run(timeout=120)
    assert done.returncode != 0 and "Read-only file system" in done.stderr, done.stderr
    # ... while the pod's emptyDirs take writes
    scratch = PodmanPod(
        image=pod.image, pod_spec=probe.pod_spec, workdir=tmp_path, config_maps=pod.config_maps,
        args=["import os; open('/tmp/x', 'w').write('ok'); open('/cache/x', 'w').write('ok'); print(os.getuid())"],
    )  # fmt: skip
    done = scratch.run(timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "65532", done.stderr


def test_the_image_holds_no_source_tree_and_no_build_tools(images: dict[str, str]) -> None:
    script = """
import importlib.util, os, shutil
print(os.getcwd())
print(importlib.util.find_spec("pip") is None, shutil.which("pip") is None, shutil.which("gcc") is None)
left = [p for p in ("/src", "/opt/cotlab-build", "/opt/cotlab/root", "/requirements.txt") if os.path.exists(p)]
# the build's wheel cache is a cache mount: at most its empty mount point remains
wheels = "/var/cache/cotlab-wheels"
print(left + (os.listdir(wheels) if os.path.isdir(wheels) else []))
"""
    argv = ["run", "--rm", "--network=none", "--read-only", "--entrypoint=python", images["trainer"], "-c", script]
    done = podman(*argv)
    assert done.stdout.split() == ["/", "True", "True", "True", "[]"], done.stdout + done.stderr


def test_the_trainer_image_carries_every_file_the_quickstart_names(images: dict[str, str]) -> None:
    """The quickstart runs on a cluster with no download: each `pkg://` file its manifests name is in the image."""
    text = (REPO / "manifests" / "examples" / "quickstart.yaml").read_text()
    uris = sorted(set(re.findall(r"pkg://[\w./-]+", text)))
    assert len(uris) >= 2
    script = (
        "import sys; from cotlab.trainer.core.storage import local_path; "
        "print([local_path(u).is_file() for u in sys.argv[1:]])"
    )
    argv = [
        "run",
        "--rm",
        "--network=none",
        "--read-only",
        "--entrypoint=python",
        images["trainer"],
        "-c",
        script,
        *uris,
    ]
    done = podman(*argv)
    assert done.stdout.strip() == str([True] * len(uris)), done.stdout + done.stderr


def test_the_trainer_images_libraries_load_under_the_pods_settings(images: dict[str, str]) -> None:
    """Every native library the stages load: a manylinux wheel that links a system library the base lacks
    (libstdc++ for numpy and torch) fails here, not in a user's pod."""
    modules = "numpy, torch, transformers, peft, accelerate, datasets, gguf, math_verify, sympy, pyarrow"
    script = f"import {modules}; import cotlab.trainer.finetune.stage, cotlab.trainer.evaluate.stage; print('ok')"
    argv = ["run", "--rm", "--network=none", "--read-only", "--user=65532:65532", "--cap-drop=ALL",
            "--tmpfs=/tmp", "--entrypoint=python", images["trainer"], "-c", script]  # fmt: skip
    done = podman(*argv, timeout=300)
    assert done.stdout.strip() == "ok", done.stderr[-3000:]
