"""What the operator refuses under its settings: each case a real example resource, the settings, and every refusal."""

from __future__ import annotations

from typing import Any

import pytest

from cotlab.operator.policy import Refusal, refusals
from cotlab.operator.settings import OperatorSettings, settings_from
from tests.unit.test_operator_builders import example

SETTINGS = OperatorSettings()  # file root /data, artifacts pvc://cotlab-artifacts/, GPU tolerations and selectors
OPEN = OperatorSettings(
    allowed_annotation_prefixes=("prometheus.io/",),
    allowed_tolerations=("nvidia.com/gpu", "dedicated=research"),
    allowed_node_selectors=("nvidia.com/gpu.product", "pool=a100"),
)
ANNOTATION = "container.apparmor.security.beta.kubernetes.io/finetune"
OUTPUT_PREFIX = "pvc://cotlab-artifacts/team-a/"


def overrides(**changes: Any) -> dict[str, Any]:
    return {"podTemplateOverrides": changes}


def refused(reason: str, path: str, problem: str) -> Refusal:
    return Refusal(reason, f"{path}: {problem}", path)


CASES: list[tuple[str, str, dict[str, Any], OperatorSettings, list[Refusal]]] = [
    ("as-given", "quickstart-lora", {}, SETTINGS, []),
    (
        "annotation-outside-the-prefixes", "quickstart-lora", overrides(annotations={ANNOTATION: "unconfined"}), OPEN,
        [refused("OverrideNotAllowed", "spec.podTemplateOverrides.annotations",
                 f"key '{ANNOTATION}' is not under an allowed prefix (COTLAB_ALLOWED_ANNOTATION_PREFIXES: "
                 "prometheus.io/)")],
    ),
    ("annotation-under-a-prefix", "quickstart-lora", overrides(annotations={"prometheus.io/scrape": "true"}), OPEN,
     []),
    (
        "no-annotations-by-default", "quickstart-lora", overrides(annotations={"prometheus.io/scrape": "true"}),
        SETTINGS,
        [refused("OverrideNotAllowed", "spec.podTemplateOverrides.annotations",
                 "key 'prometheus.io/scrape' is not under an allowed prefix "
                 "(COTLAB_ALLOWED_ANNOTATION_PREFIXES: none)")],
    ),
    (
        "tolerations", "quickstart-lora",
        {"tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},  # a key-only entry: any value
            {"key": "dedicated", "value": "research", "effect": "NoSchedule"},  # key=value entry
            {"key": "dedicated", "value": "finance"},
            {"key": "dedicated", "operator": "Exists"},  # would tolerate every value: needs the key-only entry
            {"operator": "Exists"},  # tolerates every taint
        ]},
        OPEN,
        [refused("OverrideNotAllowed", "spec.tolerations", f"'{shown}' is not allowed (COTLAB_ALLOWED_TOLERATIONS: "
                 "nvidia.com/gpu, dedicated=research)")
         for shown in ("dedicated=finance", "dedicated", "<every taint>")],
    ),
    (
        "node-selectors", "quickstart-lora",
        {"nodeSelector": {"nvidia.com/gpu.product": "H200", "pool": "a100", "kubernetes.io/hostname": "node-7"}},
        OPEN,
        [refused("OverrideNotAllowed", "spec.nodeSelector", "'kubernetes.io/hostname=node-7' is not allowed "
                 "(COTLAB_ALLOWED_NODE_SELECTORS: nvidia.com/gpu.product, pool=a100)")],
    ),
    (
        "local-files-outside-the-root", "quickstart-before",
        {"model": {"source": {"uri": "file:///proc/self/environ"}},
         "benchmarks": [{"name": "custom", "uri": "/data/../etc/passwd"}, {"name": "custom", "uri": "/data/ok.jsonl"},
                        {"name": "custom", "uri": "/database/x.jsonl"}]},
        SETTINGS,
        [refused("LocationNotAllowed", path, f"'{uri}' is outside the operator's file root (COTLAB_FILE_ROOT: /data); "
                 "mount the data under it, or use a pvc:// or s3:// URI")
         for path, uri in (("spec.model.source.uri", "file:///proc/self/environ"),
                           ("spec.benchmarks[0].uri", "/data/../etc/passwd"),
                           ("spec.benchmarks[2].uri", "/database/x.jsonl"))],
    ),
    ("local-files-under-the-root", "quickstart-before", {"model": {"source": {"uri": "file:///data/models/x"}}},
     SETTINGS, []),
    (
        "output-in-another-namespace", "quickstart-lora", {"output": {"uri": "pvc://cotlab-artifacts/team-b/models"}},
        SETTINGS,
        [refused("LocationNotAllowed", "spec.output.uri", "'pvc://cotlab-artifacts/team-b/models' is outside this "
                 f"namespace's part of the artifact store: it must start with '{OUTPUT_PREFIX}' (or leave it unset)")],
    ),
    (
        "output-climbing-out", "quickstart-traces", {"output": OUTPUT_PREFIX + "../team-b/traces"}, SETTINGS,
        [refused("LocationNotAllowed", "spec.output", f"'{OUTPUT_PREFIX}../team-b/traces' is outside this namespace's"
                 f" part of the artifact store: it must start with '{OUTPUT_PREFIX}' (or leave it unset)")],
    ),
    ("output-in-its-namespace", "quickstart-traces", {"output": OUTPUT_PREFIX + "traces/v2"}, SETTINGS, []),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spec", "settings", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusals(name: str, spec: dict[str, Any], settings: OperatorSettings, want: list[Refusal]) -> None:
    assert refusals(example(name, **spec), settings) == want


def test_settings_read_lists_and_refuse_a_relative_file_root() -> None:
    settings = settings_from({"COTLAB_ALLOWED_TOLERATIONS": "", "COTLAB_ALLOWED_NODE_SELECTORS": "a, b=c"})
    assert (settings.allowed_tolerations, settings.allowed_node_selectors) == ((), ("a", "b=c"))
    with pytest.raises(ValueError, match="COTLAB_FILE_ROOT='data': must be an absolute directory"):
        settings_from({"COTLAB_FILE_ROOT": "data"})
