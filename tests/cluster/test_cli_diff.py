"""`cotctl diff -k` against the real kube-apiserver: the GitOps repository of `cotctl init` before its first apply,
after it, and after edits a pull request might make. The verdicts are the API server's (dry runs against the CRDs'
schemas and CEL rules); the repository is applied with kubectl's client-side apply, as Argo CD does by default.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml
from kube_wait import wait_for
from test_operator import get, run_kubectl
from typer.testing import CliRunner

from cotlab.cli.main import app
from tests.unit.test_scaffold_workflow import run_step, step

runner = CliRunner()
ALL = [
    ("EvalRun", "x-base-eval"),
    ("EvalRun", "x-human-stage4-eval"),
    ("EvalRun", "x-qwq-eval"),
    ("FineTuneRun", "x-human-stage4"),
    ("FineTuneRun", "x-qwq"),
    ("TraceDataset", "x-human-stage4-traces"),
    ("TraceDataset", "x-qwq-traces"),
]


def diff(kubeconfig: Path, namespace: str, repo: Path, *extra: str) -> Any:
    return runner.invoke(app, ["diff", "-k", str(repo), "--kubeconfig", str(kubeconfig), "-n", namespace, *extra])


def actions(result: Any) -> dict[tuple[str, str], tuple[str, list[dict[str, Any]]]]:
    report = json.loads(result.stdout)
    return {(r["kind"], r["name"]): (r["action"], r["changes"]) for r in report["resources"]}


def edit(path: Path, kind: str, change: Any) -> None:
    """Edit the document of `kind` in a multi-document file in place, as a pull request would."""
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["kind"] == kind:
            change(doc)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def diff_step(repo: Path, kubeconfig: Path, namespace: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The scaffold workflow's diff step as the runner runs it, with the repository's kubeconfig secret set: a
    token of the scaffold's own least-privilege identity (ci/diff-access.yaml), its context in the namespace."""
    run_kubectl(kubeconfig, namespace, "apply", "-f", str(repo / "ci" / "diff-access.yaml"))
    token = run_kubectl(kubeconfig, namespace, "create", "token", "cotlab-ci-diff").stdout.strip()
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": "cotlab-ci-diff", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"] |= {"namespace": namespace, "user": "cotlab-ci-diff"}
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    secret = {"KUBECONFIG_DATA": yaml.safe_dump(config), "RUNNER_TEMP": str(runner_temp)}
    return run_step(repo, step(repo, "diff")["run"], secret)


def test_diff_before_and_after_the_first_apply_and_after_edits(
    kube_api: kubernetes.client.ApiClient, kubeconfig: Path, namespace: str, crds: list[str], tmp_path: Path
) -> None:
    repo = tmp_path / "x"
    assert runner.invoke(app, ["init", str(repo)]).exit_code == 0

    before = diff(kubeconfig, namespace, repo, "-o", "json")
    assert before.exit_code == 1, before.output
    assert actions(before) == {resource: ("create", []) for resource in ALL}
    table = diff(kubeconfig, namespace, repo)
    assert table.exit_code == 1
    assert f"{namespace}   evalrun.cotlab.dev/x-base-eval " in table.stdout and table.stdout.count(" create") == 7
    assert table.stderr.splitlines()[-1] == "7 create, 0 update, 0 unchanged, 0 refused (7 resources)"
    assert get(kube_api, namespace, "EvalRun", "x-base-eval") is None  # dry runs only
    in_ci = diff_step(repo, kubeconfig, namespace, tmp_path)
    assert in_ci.returncode == 0, in_ci.stderr  # new runs are what a pull request is for: the check passes
    assert in_ci.stdout.count(" create") == 7

    run_kubectl(kubeconfig, namespace, "apply", "-k", str(repo))
    after = diff(kubeconfig, namespace, repo, "-o", "json")
    assert after.exit_code == 0, after.output
    assert actions(after) == {resource: ("unchanged", []) for resource in ALL}

    # A pull request retunes a run that exists: refused, each changed field named with the server's defaults in
    # mind (dropping warmupRatio 0.05, the default, changes nothing; dropping maxSeqLength 32768 means 16384).
    qwq = repo / "experiment" / "qwq.yaml"
    original = qwq.read_text()

    def retune(doc: dict[str, Any]) -> None:
        doc["spec"]["training"]["learningRate"] = 2.0e-5
        del doc["spec"]["training"]["warmupRatio"], doc["spec"]["training"]["maxSeqLength"]

    edit(qwq, "FineTuneRun", retune)
    refused = diff(kubeconfig, namespace, repo, "-o", "json")
    assert refused.exit_code == 3, refused.output
    assert actions(refused) == {resource: ("unchanged", []) for resource in ALL} | {
        ("FineTuneRun", "x-qwq"): ("refused", [
            {"path": "spec.training.learningRate", "from": 1.0e-5, "to": 2.0e-5},
            {"path": "spec.training.maxSeqLength", "from": 32768, "to": 16384},
        ]),
    }  # fmt: skip
    message = json.loads(refused.stdout)["resources"]
    assert "spec is immutable except spec.suspend" in next(r for r in message if r["name"] == "x-qwq")["message"]
    assert (
        "Error: finetunerun.cotlab.dev/x-qwq would be refused: it changes spec.training.learningRate, "
        "spec.training.maxSeqLength" in refused.stderr
    )
    assert "give the changed run a new name" in refused.stderr
    refused_in_ci = diff_step(repo, kubeconfig, namespace, tmp_path)
    assert refused_in_ci.returncode == 3 and "x-qwq would be refused" in refused_in_ci.stderr  # the check fails
    shown = diff(kubeconfig, namespace, repo)
    line = next(line for line in shown.stdout.splitlines() if "finetunerun.cotlab.dev/x-qwq " in line)
    assert line.split()[2:] == ["refused", "spec.training.learningRate:", "1e-05", "->", "2e-05;",
                                "spec.training.maxSeqLength:", "32768", "->", "16384"]  # fmt: skip

    # The GitOps way: the changed run gets a new name (and its evaluation follows it); the old ones stay put.
    def rename(doc: dict[str, Any]) -> None:
        doc["metadata"]["name"] = "x-qwq-lr2e-5"

    edit(qwq, "FineTuneRun", rename)
    edit(qwq, "EvalRun", lambda d: d["spec"]["model"]["fineTuneRunRef"].update(name="x-qwq-lr2e-5"))
    edit(qwq, "EvalRun", lambda d: d["metadata"].update(name="x-qwq-lr2e-5-eval"))
    renamed = diff(kubeconfig, namespace, repo, "-o", "json")
    assert renamed.exit_code == 1, renamed.output
    got = actions(renamed)
    assert got[("FineTuneRun", "x-qwq-lr2e-5")] == ("create", []) and got[("EvalRun", "x-qwq-lr2e-5-eval")] == (
        "create",
        [],
    )
    assert ("FineTuneRun", "x-qwq") not in got

    # What may change on a run that exists: spec.suspend and labels are an update, accepted.
    qwq.write_text(original)
    edit(qwq, "EvalRun", lambda d: d["spec"].update(suspend=True))
    edit(qwq, "EvalRun", lambda d: d["metadata"]["labels"].update(owner="ana"))
    update = diff(kubeconfig, namespace, repo, "-o", "json")
    assert update.exit_code == 1, update.output
    assert actions(update)[("EvalRun", "x-qwq-eval")] == ("update", [
        {"path": "spec.suspend", "from": False, "to": True}, {"path": "metadata.labels.owner", "to": "ana"},
    ])  # fmt: skip
    assert get(kube_api, namespace, "EvalRun", "x-qwq-eval")["spec"]["suspend"] is False  # type: ignore[index]


def test_a_spec_only_the_server_refuses_is_refused_with_its_message(
    kubeconfig: Path, namespace: str, crds: list[str], tmp_path: Path
) -> None:
    """A new resource that passes cotlab's own validation but not the API server's (a label value over 63 bytes):
    refused, with the server's words, since only a dry run against the real server can tell."""
    repo = tmp_path / "y"
    assert runner.invoke(app, ["init", str(repo)]).exit_code == 0
    edit(repo / "experiment" / "baseline.yaml", "EvalRun", lambda d: d["metadata"]["labels"].update(owner="x" * 64))
    result = diff(kubeconfig, namespace, repo, "-o", "json")
    assert result.exit_code == 3, result.output
    refused = {(r["kind"], r["name"]): r for r in json.loads(result.stdout)["resources"] if r["action"] == "refused"}
    assert list(refused) == [("EvalRun", "y-base-eval")]
    said = refused[("EvalRun", "y-base-eval")]["message"]
    assert said.startswith('EvalRun.cotlab.dev "y-base-eval" is invalid: metadata.labels: Invalid value: "xxx')
    assert said.endswith("must be no more than 63 bytes")
    assert (
        f"Error: evalrun.cotlab.dev/y-base-eval would be refused: the API server rejects it ({said})" in result.stderr
    )


def test_admission_refuses_and_missing_rights_are_an_error(
    kube_api: kubernetes.client.ApiClient, kubeconfig: Path, namespace: str, crds: list[str], tmp_path: Path
) -> None:
    """A cluster's own admission policy (a ValidatingAdmissionPolicy capping samples) answering 403 "denied" gives a
    verdict on the manifests: refused. An identity without the rights diff needs also gets a 403: an error."""
    repo = tmp_path / "z"
    assert runner.invoke(app, ["init", str(repo)]).exit_code == 0
    policy = f"cotlab-samples-{namespace}"
    admission = kubernetes.client.AdmissionregistrationV1Api(kube_api)
    admission.create_validating_admission_policy({
        "metadata": {"name": policy},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["cotlab.dev"], "apiVersions": ["*"],
                                                    "operations": ["CREATE"], "resources": ["evalruns"]}]},
            "validations": [{"expression": "object.spec.sampling.samples <= 16",
                             "message": "this cluster allows at most 16 samples per problem",
                             "reason": "Forbidden"}],  # 403, as RBAC answers (the default is 422 Invalid)
        },
    })  # type: ignore[arg-type]  # fmt: skip
    admission.create_validating_admission_policy_binding({
        "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}},
    })  # type: ignore[arg-type]  # fmt: skip
    try:

        def refused() -> Any:
            result = diff(kubeconfig, namespace, repo, "-o", "json")
            return result if result.exit_code == 3 else None

        wait_for(refused, timeout=60, what="the admission policy to take effect", interval=1.0)
        # The run that first saw a refusal may have straddled the moment the policy took effect (CI: its first two
        # dry-run creates were admitted, the third refused): judge a run made wholly after it.
        result = diff(kubeconfig, namespace, repo, "-o", "json")
    finally:
        admission.delete_validating_admission_policy_binding(policy)
        admission.delete_validating_admission_policy(policy)
    got = {(r["kind"], r["name"]): (r["action"], r.get("message", "")) for r in json.loads(result.stdout)["resources"]}
    assert sorted(name for (kind, name), (action, _) in got.items() if action == "refused") == [
        "z-base-eval", "z-human-stage4-eval", "z-qwq-eval",
    ]  # fmt: skip
    assert {action for (kind, _), (action, _) in got.items() if kind != "EvalRun"} == {"create"}
    assert got[("EvalRun", "z-qwq-eval")][1].endswith(
        f"ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied request: "
        "this cluster allows at most 16 samples per problem"
    )

    # The CI identity without `create`: forbidden by RBAC is not a verdict on the manifests.
    run_kubectl(kubeconfig, namespace, "apply", "-f", str(repo / "ci" / "diff-access.yaml"))
    run_kubectl(kubeconfig, namespace, "patch", "role", "cotlab-ci-diff", "--type=json",
                "-p", '[{"op": "replace", "path": "/rules/0/verbs", "value": ["get", "update"]}]')  # fmt: skip
    token = run_kubectl(kubeconfig, namespace, "create", "token", "cotlab-ci-diff").stdout.strip()
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": "ci", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "ci"
    limited = tmp_path / "ci.kubeconfig"
    limited.write_text(yaml.safe_dump(config))
    forbidden = diff(limited, namespace, repo)
    assert forbidden.exit_code == 2 and forbidden.stdout == ""
    assert forbidden.stderr.startswith(
        f'Error: forbidden: you may not create evalruns.cotlab.dev "z-base-eval" in namespace "{namespace}"'
    )
