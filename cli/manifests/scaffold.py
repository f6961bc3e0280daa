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


# Argo CD's sync options for resources whose spec cannot change (see the README's "Why these sync options"):
# server-side apply, and never Replace or Force, which cannot change a run and could only delete and recreate it.
SYNC_OPTIONS = ("ServerSideApply=true", "FailOnSharedResource=true")


def application(experiment: str, namespace: str | None) -> str:
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": f"cotlab-{experiment}", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "REPLACE-WITH-THIS-REPOSITORY-URL", "targetRevision": "HEAD", "path": "."},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace or "default"},
            "syncPolicy": {"automated": {"prune": False, "selfHeal": False}, "syncOptions": list(SYNC_OPTIONS)},
        },
    }
    header = (
        "# The experiment as an Argo CD Application: set repoURL, then kubectl apply -f argocd/application.yaml\n"
        "# Merged changes sync on their own; a run removed or renamed in Git is never pruned automatically (its\n"
        "# results stay until you delete it on purpose), and no sync option replaces or recreates a run: README.md.\n"
    )
    return header + yaml.safe_dump(app, sort_keys=False)


KUBECONFIG_SECRET = "COTLAB_KUBECONFIG"
CI_IDENTITY = "cotlab-ci-diff"
# What `cotctl diff` sends: get, then dry-run creates and updates (a dry run needs the rights of the real request).
CI_RULES = [{"apiGroups": [GROUP], "resources": ["tracedatasets", "finetuneruns", "evalruns"],
             "verbs": ["get", "create", "update"]}]  # fmt: skip


def ci_access(namespace: str | None) -> str:
    """ci/diff-access.yaml: the ServiceAccount the CI's kubeconfig uses, with only the rights `cotctl diff` needs."""
    where = {"namespace": namespace} if namespace else {}
    subject = {"kind": "ServiceAccount", "name": CI_IDENTITY} | where
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": CI_IDENTITY} | where},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": CI_IDENTITY} | where,
         "rules": CI_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": CI_IDENTITY} | where, "subjects": [subject],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CI_IDENTITY}},
    ]  # fmt: skip
    header = (
        "# The identity of the CI's `cotctl diff`: get the three kinds, and create and update them, which diff only\n"
        "# ever does as dry runs. Kubernetes cannot grant dry runs alone, so guard the kubeconfig made from it.\n"
    )
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)


def workflow(version: str) -> str:
    """.github/workflows/validate.yml: validate on every pull request; diff against the cluster when it may."""
    return f"""\
# Checks each pull request before Argo CD applies it: the manifests as kustomize renders them (what Argo CD
# applies) must validate, and, when the repository has a {KUBECONFIG_SECRET} secret (a kubeconfig that may read
# and dry-run cotlab resources), `cotctl diff` says what merging would do on the cluster. The diff step fails
# only when applying would be refused (exit 3: a changed spec of a run that exists) or the cluster could not be
# asked (exit 2); creating new runs (exit 1) is what a pull request is for.
name: validate

on:
  pull_request:
  push:
    branches: [main]

permissions:
  contents: read

jobs:
  validate:
    runs-on: ubuntu-latest
    timeout-minutes: 15
    env:
      COTLAB_VERSION: "{version}"
      KUBECONFIG_DATA: ${{{{ secrets.{KUBECONFIG_SECRET} }}}}
    steps:
      - uses: actions/checkout@v6
      - uses: actions/setup-python@v6
        with:
          python-version: "3.12"
      - name: Install cotctl
        run: python -m pip install "cotlab[cli]==${{COTLAB_VERSION}}"
      - name: Validate
        id: validate
        run: cotctl validate -k .
      - name: What merging would change on the cluster
        id: diff
        if: env.KUBECONFIG_DATA != ''
        run: |
          umask 077
          printf '%s' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"
          status=0
          cotctl diff -k . --kubeconfig "$RUNNER_TEMP/kubeconfig" || status=$?
          if [ "$status" -gt 1 ]; then exit "$status"; fi
"""


def readme(experiment: str, arms: list[str], base_model: str, namespace: str | None) -> str:
    ns = f" -n {namespace}" if namespace else ""
    arm_rows = "\n".join(
        f"| `{arm}` | `experiment/{arm}.yaml` | TraceDataset `{experiment}-{arm}-traces` → FineTuneRun "
        f"`{experiment}-{arm}` → EvalRun `{experiment}-{arm}-eval` |"
        for arm in arms
    )
    commands = [
        ("cotctl validate -k .", "what kustomize renders (what Argo CD applies), checked offline"),
        (f"cotctl diff -k .{ns}", "what applying would do: create, update, unchanged or refused"),
        (f"cotctl apply -f experiment/{ns}", "or: kubectl apply -k ."),
    ]
    width = max(len(command) for command, _ in commands) + 3
    run_block = "\n".join(f"{command.ljust(width)}# {comment}" for command, comment in commands)
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
{run_block}
```

Apply everything at once: each FineTuneRun waits for its TraceDataset, each EvalRun for its FineTuneRun.
With GitOps, set `repoURL` in `argocd/application.yaml` and apply it; merge `argocd/health-checks.yaml` into
`argocd-cm` so Argo CD shows the runs as Progressing, Healthy (Ready) or Degraded (Failed).

## Checks on every pull request

`.github/workflows/validate.yml` installs the cotctl that made this repository (`COTLAB_VERSION`; change the
install line if you get cotctl another way) and runs `cotctl validate -k .` on every pull request: a field that
the API server would reject fails the check, naming the file, the resource and the field. Kinds that are not
cotlab's (this kustomization, the Argo CD files) are skipped; `--strict` makes them fail.

Give the repository a secret `{KUBECONFIG_SECRET}` holding a kubeconfig of the cluster and the workflow also runs
`cotctl diff -k .`, which asks the API server, without changing anything, what merging would do to each
resource. Its exit code: 0 nothing changes, 1 runs would be created or updated (the check passes), 2 the cluster
could not be asked, 3 refused: a run that exists would change its spec, which the API server rejects, so the
check fails before Argo CD's sync would. `ci/diff-access.yaml` is an identity with only the rights diff needs
(get, and create and update, which diff sends only as dry runs; Kubernetes cannot grant dry runs alone, so keep
the secret as guarded as any credential that can change runs; GitHub gives none to pull requests from forks):

```bash
kubectl apply{ns} -f ci/diff-access.yaml
kubectl create token{ns} {CI_IDENTITY} --duration=720h    # the token of the kubeconfig you store as the secret
```

## Changing an experiment (the GitOps way)

A run's spec is fixed once it exists (only `spec.suspend` may change): its results must belong to the spec that
produced them. So a change is a new run:

- **Change a run: give it a new name.** Edit the copy under a new name (`{experiment}-qwq-lr2e-5`) and point
  what depends on it at the new name (the EvalRun's `fineTuneRunRef`, the FineTuneRun's `datasetRef`). Editing
  a run in place is refused, and `cotctl diff` says so: `refused  spec.training.learningRate: 1e-05 -> 2e-05`.
- **Old runs are kept or deleted on purpose.** Argo CD here never prunes: a run removed or renamed in Git stays,
  with its status and scores, and the Application shows it as needing pruning. Delete it when you mean to
  (`cotctl delete{ns} finetunerun/NAME`, or `argocd app sync cotlab-{experiment} --prune`); mark runs you always
  want to keep with the annotation `argocd.argoproj.io/sync-options: Prune=false`.
- **Pause and resume** with `cotctl suspend` / `cotctl resume`, or `spec.suspend: true` in Git: the one field
  that may change. The manifests leave it out, so a sync never undoes a `cotctl suspend`.

### Why these Argo CD sync options

`argocd/application.yaml` syncs automatically with `prune: false` and `selfHeal: false`, and the options
`ServerSideApply=true` and `FailOnSharedResource=true`:

- **No `Replace=true`.** Replace swaps `kubectl apply` for `kubectl replace`, which is still an update of the
  run, and the API server's immutability rule refuses it just the same; with `Force=true` added, Argo CD deletes
  and recreates the run instead, which throws away the finished run's status and scores, its Job and logs, and
  starts hours of GPU work again under the old name, whose results then belong to a different spec.
- **`ServerSideApply=true`.** Argo CD applies only the fields these manifests set and owns just those: no
  `last-applied-configuration` annotation holding a copy of every spec, and fields others set (`spec.suspend`
  from `cotctl suspend`) are left alone.
- **No automatic prune or self-heal.** Deleting a run deletes its Job and status; that should be a decision,
  not the side effect of renaming a file. Argo CD's automated sync tries each commit once, so a change the API
  server refuses shows as a failed sync rather than a retry loop; `cotctl diff` in CI catches it before merging.
- **`FailOnSharedResource=true`.** Two Applications that name the same run (a study copied from another without
  renaming) would otherwise both claim it; the sync fails instead.

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
