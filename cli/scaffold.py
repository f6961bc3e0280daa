"""The prose and Argo CD files of `cotctl init`'s repository (the manifests themselves are built in `init`)."""

from __future__ import annotations

from typing import Any

import yaml

from cotlab.api import GROUP

# One health check for the three kinds: they share the condition types (cotlab.api.conditions). Failed wins, then
# Ready, then Suspended; a resource waiting for its dependency or queue is Progressing, as is one with no status.
HEALTH_LUA = """\
local hs = {status = "Progressing", message = "waiting for the cotlab operator"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local found = {}
for _, condition in ipairs(obj.status.conditions) do
  if condition.status == "True" then
    found[condition.type] = condition
  end
end
if found["Failed"] ~= nil then
  hs.status = "Degraded"
  hs.message = found["Failed"].reason .. ": " .. (found["Failed"].message or "")
elseif found["Ready"] ~= nil then
  hs.status = "Healthy"
  hs.message = found["Ready"].message or "Ready"
elseif found["Suspended"] ~= nil then
  hs.status = "Suspended"
  hs.message = found["Suspended"].message or "suspended"
elseif found["Running"] ~= nil then
  hs.message = found["Running"].message or "running"
elseif found["Waiting"] ~= nil then
  hs.message = found["Waiting"].reason .. ": " .. (found["Waiting"].message or "")
end
return hs
"""


def argocd_health(kinds: list[str]) -> str:
    """argocd-cm keys `resource.customizations.health.cotlab.dev_<Kind>` holding the Lua health check."""
    data = {f"resource.customizations.health.{GROUP}_{kind}": HEALTH_LUA for kind in kinds}
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
        },
        "data": data,
    }
    header = (
        "# Argo CD health for TraceDataset, FineTuneRun and EvalRun: Healthy when Ready, Degraded when Failed,\n"
        "# Suspended when suspended, Progressing otherwise. Merge these keys into your argocd-cm, e.g.\n"
        "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd/health-checks.yaml\n"
    )
    return header + yaml.safe_dump(config_map, sort_keys=False, width=1000)


def application(experiment: str, namespace: str | None) -> str:
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": f"cotlab-{experiment}", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "REPLACE-WITH-THIS-REPOSITORY-URL", "targetRevision": "HEAD", "path": "."},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace or "default"},
            # Specs are immutable once a run started: a changed run is a new run (delete and recreate),
            # which Replace does; pruning removes arms deleted from the repository.
            "syncPolicy": {"automated": {"prune": True}, "syncOptions": ["Replace=true"]},
        },
    }
    header = "# The experiment as an Argo CD Application: set repoURL, then kubectl apply -f argocd/application.yaml\n"
    return header + yaml.safe_dump(app, sort_keys=False)


def readme(experiment: str, arms: list[str], base_model: str, namespace: str | None) -> str:
    ns = f" -n {namespace}" if namespace else ""
    arm_rows = "\n".join(
        f"| `{arm}` | `experiment/{arm}.yaml` | TraceDataset `{experiment}-{arm}-traces` → FineTuneRun "
        f"`{experiment}-{arm}` → EvalRun `{experiment}-{arm}-eval` |"
        for arm in arms
    )
    return f"""# {experiment}

A cotlab experiment: does fine-tuning `{base_model}` on 20 long chain-of-thought traces teach it to reason, and
whose traces teach it best? Each arm curates 20 traces of one kind from `nvidia/Nemotron-Math-HumanReasoning`,
fine-tunes the base model on them and evaluates it on AIME24, AIME25 and HMMT-24-25 with 64 samples per problem
(pass@1 and maj@64). The baseline evaluates the base model itself with the same protocol.

| arm | file | resources |
|---|---|---|
| `base` | `experiment/baseline.yaml` | EvalRun `{experiment}-base-eval` |
{arm_rows}

Every resource is labelled `cotlab.dev/experiment={experiment}` and `cotlab.dev/arm=<arm>`. Add an arm by copying
an arm's file, renaming its resources and changing `where.solution_type` (or the whole source); add its file to
`kustomization.yaml`.

## Before you run it

- The cotlab operator and CRDs are installed (`kubectl apply -k manifests/install` from the cotlab repository).
- A Secret `hf-token` (key `token`) holds a Hugging Face token{" in namespace " + namespace if namespace else ""}.
- The namespace has the `cotlab-artifacts` PersistentVolumeClaim the operator writes outputs to.
- Each fine-tune and evaluation asks for 8 GPUs.

## Run it

```bash
cotctl validate -f experiment/                    # the same checks the API server makes, offline
cotctl apply -f experiment/{ns} --dry-run=server   # the API server's own verdict, nothing persisted
cotctl apply -f experiment/{ns}                    # or: kubectl apply -k .
```

Apply everything at once: each FineTuneRun waits for its TraceDataset, each EvalRun for its FineTuneRun.
With GitOps, set `repoURL` in `argocd/application.yaml` and apply it; merge `argocd/health-checks.yaml` into
`argocd-cm` so Argo CD shows the runs as Progressing, Healthy (Ready) or Degraded (Failed).

## Watch it

```bash
cotctl status{ns} -l cotlab.dev/experiment={experiment} --watch
cotctl logs{ns} finetunerun/{experiment}-{arms[0] if arms else "ARM"} -f
cotctl wait{ns} evalrun -l cotlab.dev/experiment={experiment} --for=condition=Ready --timeout=48h
cotctl describe{ns} evalrun/{experiment}-base-eval
```

## Compare it

```bash
cotctl compare{ns} -l cotlab.dev/experiment={experiment} --rows label:cotlab.dev/arm --baseline base \\
    --artifacts-root /path/to/a/copy/of/the/claims
cotctl compare{ns} -l cotlab.dev/experiment={experiment} -o markdown > results.md
cotctl compare{ns} -l cotlab.dev/experiment={experiment} --plot scores.png --plot-x tokens
```

Rows are the arms, columns the benchmarks: pass@1 ± standard error and maj@64, the best of each column marked,
and each arm's pass@1 difference from the baseline with a 95% paired bootstrap interval over problems and training
seeds, Holm-corrected across the table, marked significant only when the interval excludes 0. The bootstrap reads the
per-sample records, which live on the `cotlab-artifacts` claim: mount it or copy it (e.g. `kubectl cp` from a
pod that mounts it) and pass the copy's folder with `--artifacts-root` (files at `DIR/cotlab-artifacts/...`).
`cotctl results <evalrun> --samples` pages through the records themselves.
"""
