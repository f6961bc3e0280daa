"""`cotctl init DIR`: a GitOps experiment repository: one experiment with its arms, ready to apply and compare.

    DIR/README.md                  how to validate, run, watch and compare it
    DIR/kustomization.yaml         the experiment, for `kubectl apply -k` and Argo CD
    DIR/experiment/baseline.yaml   the base model's EvalRun (the comparison's baseline)
    DIR/experiment/<arm>.yaml      per arm: TraceDataset -> FineTuneRun -> EvalRun
    DIR/argocd/application.yaml    an Argo CD Application for this repository (set its repoURL)
    DIR/argocd/health-checks.yaml  Argo CD health checks for the three kinds (merge into argocd-cm)
    DIR/.github/workflows/validate.yml  CI: `cotctl validate -k .` on every pull request, `cotctl diff -k .` too
                                   when the repository has a kubeconfig secret
    DIR/ci/diff-access.yaml        the least-privilege identity for that kubeconfig

The manifests are built as data and checked against the API models before anything is written, so a fresh
repository always validates. Every resource carries `cotlab.dev/experiment` and `cotlab.dev/arm` labels, which
is what `cotctl status -l` and `cotctl compare -l` select on.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from cotlab.api import GROUP, RESOURCE_KINDS
from cotlab.api.validation import validate_document

from ..manifests.scaffold import application, argocd_health, ci_access, readme, workflow
from ..terminal.errors import UsageError, reported
from ..terminal.output import stdout

EXPERIMENT_LABEL = "cotlab.dev/experiment"
ARM_LABEL = "cotlab.dev/arm"
DEFAULT_ARMS = ("qwq=qwq_32b_preview", "human-stage4=human_stage4")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _labels(experiment: str, arm: str) -> dict[str, str]:
    return {EXPERIMENT_LABEL: experiment, ARM_LABEL: arm}


def _eval(name: str, labels: dict[str, str], model: dict[str, Any], *, base: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": model,
        "benchmarks": [{"name": "aime24"}, {"name": "aime25"}, {"name": "hmmt-24-25"}],
        "sampling": {"samples": 64, "temperature": 0.6, "topP": 0.95, "maxTokens": 32768, "seed": 0},
        "metrics": ["pass@1", "maj@64"],
        "engine": {"name": "vllm", "tensorParallelSize": 8, "maxModelLen": 34816},
        "resources": {"requests": {"nvidia.com/gpu": 8}, "limits": {"nvidia.com/gpu": 8}},
    }
    if base:
        spec["prompt"] = {"style": "completion"}  # a base model has no chat template worth using
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def arm_documents(experiment: str, arm: str, solution_type: str, base_model: str) -> list[dict[str, Any]]:
    """One arm: 20 traces of one solution type, a full fine-tune of the base model on them, its evaluation."""
    labels = _labels(experiment, arm)
    traces, tune = f"{experiment}-{arm}-traces", f"{experiment}-{arm}"
    hub = {"hub": base_model, "tokenSecretRef": {"name": "hf-token"}}
    return [
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "TraceDataset",
            "metadata": {"name": traces, "labels": labels},
            "spec": {
                "source": {
                    "huggingface": {
                        "repo": "nvidia/Nemotron-Math-HumanReasoning",
                        "split": "train",
                        "where": {"solution_type": [solution_type]},
                        "tokenSecretRef": {"name": "hf-token"},
                    }
                },
                "fields": {"problem": "problem", "solution": "solution", "answer": "expected_answer",
                           "stage": "solution_type"},
                "select": {"count": 20, "seed": 0, "strategy": "random"},
                "tokenizer": {"hub": base_model},
            },
        },
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "FineTuneRun",
            "metadata": {"name": tune, "labels": labels},
            "spec": {
                "baseModel": hub,
                "datasetRef": {"name": traces},
                "method": "full",
                "training": {"epochs": 3, "learningRate": 1.0e-5, "schedule": "cosine", "warmupRatio": 0.05,
                             "maxSeqLength": 32768, "precision": "bf16"},
                "distributed": {"nodes": 1, "gpusPerNode": 8, "strategy": "fsdp"},
                "resources": {"requests": {"nvidia.com/gpu": 8}, "limits": {"nvidia.com/gpu": 8}},
            },
        },
        _eval(f"{tune}-eval", labels, {"fineTuneRunRef": {"name": tune}}, base=False),
    ]  # fmt: skip


def experiment_files(
    experiment: str, arms: list[tuple[str, str]], base_model: str, namespace: str | None
) -> dict[str, str]:
    """Every file of the repository, relative path -> text (pure: nothing is written here)."""
    files: dict[str, str] = {}
    baseline = _eval(f"{experiment}-base-eval", _labels(experiment, "base"),
                     {"source": {"hub": base_model, "tokenSecretRef": {"name": "hf-token"}}}, base=True)  # fmt: skip
    documents = {"experiment/baseline.yaml": [baseline]}
    for arm, solution_type in arms:
        documents[f"experiment/{arm}.yaml"] = arm_documents(experiment, arm, solution_type, base_model)
    for path, docs in documents.items():
        for doc in docs:
            errors = validate_document(doc, path)
            assert not errors, errors  # the templates are ours: an invalid one is a bug here, not a user error
        header = (
            f"# {experiment}: generated by cotctl init; edit freely, then check with cotctl validate -f experiment/\n"
        )
        files[path] = header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        kustomization["namespace"] = namespace
    kustomization["resources"] = list(documents)
    files["kustomization.yaml"] = yaml.safe_dump(kustomization, sort_keys=False)
    kinds = [k.kind for k in RESOURCE_KINDS]
    files["argocd/health-checks.yaml"] = argocd_health(kinds)
    files["argocd/application.yaml"] = application(experiment, namespace)
    files[".github/workflows/validate.yml"] = workflow(version("cotlab"))  # CI installs the cotctl that wrote it
    files["ci/diff-access.yaml"] = ci_access(namespace)
    files["README.md"] = readme(experiment, [a for a, _ in arms], base_model, namespace)
    return files


def _arm(text: str) -> tuple[str, str]:
    arm, sep, solution_type = text.partition("=")
    if not sep or not NAME.match(arm) or not solution_type:
        raise UsageError(f"--arm: expected NAME=SOLUTION_TYPE (e.g. qwq=qwq_32b_preview), got {text!r}")
    return arm, solution_type


def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the repository (new or empty).")],
    name: Annotated[str | None, typer.Option("--name", help="Experiment name (default: the folder's).")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace for kustomize.")] = None,
    base_model: Annotated[str, typer.Option("--base-model", help="Hub id of the base model.")] = "Qwen/Qwen2.5-32B",
    arms: Annotated[
        list[str] | None, typer.Option("--arm", help="NAME=SOLUTION_TYPE of Nemotron-Math-HumanReasoning; repeatable.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that is not empty.")] = False,
) -> None:
    """Create a GitOps experiment repository: manifests for a baseline and arms, a README, Argo CD health checks."""
    with reported():
        # From the folder: made a DNS label ("My_Study" -> "my-study"); a given --name must already be one.
        experiment = name or re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")[:40].strip("-")
        if not NAME.match(experiment) or len(experiment) > 40:
            raise UsageError(f"--name: {experiment!r} must be a lowercase DNS label of at most 40 characters")
        parsed = [_arm(a) for a in (arms or list(DEFAULT_ARMS))]
        if len({a for a, _ in parsed}) != len(parsed) or "base" in {a for a, _ in parsed}:
            raise UsageError("--arm: arm names must be distinct and not 'base' (the baseline's)")
        if directory.exists() and any(directory.iterdir()) and not force:
            raise UsageError(f"{directory} is not empty", "pick a new folder, or pass --force to write into it")
        for path, text in experiment_files(experiment, parsed, base_model, namespace).items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            stdout.out(str(target), highlight=False)
