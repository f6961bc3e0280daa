"""How a resource's children are named and labelled: the operator builds them, the CLI selects on them.

Children are named from the resource alone (deterministic, so a restarted operator finds what it made): the
resource's name plus its stage. A name that is shortened (to the 63 characters a Job name may have) always
carries a hash of the full name, and so does a name that already ends like a hash (`-` and 8 hex digits):
otherwise `x-<hash of a long name>` would get the long name's children. Names are still only a way to find
children: a child is the resource's only when its controller owner reference carries the resource's uid.
"""

from __future__ import annotations

import hashlib
import re

from .podcontract import STAGE_BY_KIND

# Label keys on every child (Job, its pods, the spec ConfigMap, the rendezvous Service).
LABEL_KIND = "cotlab.dev/kind"
LABEL_NAME = "cotlab.dev/name"
LABEL_STAGE = "cotlab.dev/stage"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# On the Job of a multi-node FineTuneRun and its pods: which attempt they are (0 first), as JobSet's
# jobset.sigs.k8s.io/restart-attempt; the attempt the operator runs is the resource's status.restarts.
RESTART_ATTEMPT_LABEL = "cotlab.dev/restart-attempt"
MANAGED_BY = "cotlab-operator"

# The Job controller's own label on pods; Kueue's label that puts a Job in a LocalQueue.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
# Kueue's label on the Workload it makes for a Job: the Job's uid.
WORKLOAD_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"

MAX_CHILD_NAME = 63  # Job names become pod labels (job-name), which are limited to 63 characters
MAX_LABEL_VALUE = 63


_HASH_TAIL = re.compile(r"-[0-9a-f]{8}$")  # how a shortened name ends before its stage
_HASH_LENGTH = 8


def _digest(kind: str, name: str) -> str:
    return hashlib.sha256(f"{kind}/{name}".encode()).hexdigest()[:_HASH_LENGTH]


def _shortened(kind: str, name: str, suffix: str) -> str:
    """`<name cut>-<hash of kind/name><suffix>`, at most MAX_CHILD_NAME characters."""
    keep = MAX_CHILD_NAME - len(suffix) - _HASH_LENGTH - 1
    return f"{name[:keep].rstrip('-.')}-{_digest(kind, name)}{suffix}"


def child_name(kind: str, name: str) -> str:
    """The name of the Job (and its ConfigMap) of resource `kind`/`name`, e.g. `qwq-20-curate`."""
    suffix = f"-{STAGE_BY_KIND[kind]}"
    if len(name) + len(suffix) <= MAX_CHILD_NAME and not _HASH_TAIL.search(name):
        return name + suffix
    return _shortened(kind, name, suffix)


def child_labels(kind: str, name: str) -> dict[str, str]:
    """The labels every child of `kind`/`name` carries (the CLI selects on them)."""
    fits = len(name) <= MAX_LABEL_VALUE and not _HASH_TAIL.search(name)
    return {
        LABEL_KIND: kind,
        LABEL_NAME: name if fits else _shortened(kind, name, ""),
        LABEL_STAGE: STAGE_BY_KIND[kind],
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def attempt_job_name(kind: str, name: str, restarts: int) -> str:
    """The Job of attempt `restarts` of a multi-node run: `child_name` for the first, then `-r<N>` after it.

    A first attempt's name always ends in the stage and a later one's in `-r<N>`, so no two resources' Jobs can
    share a name (`tune` restarted once is `tune-finetune-r1`; a resource named `tune-r1` has `tune-r1-finetune`).
    """
    base = child_name(kind, name)
    if restarts == 0:
        return base
    suffix = f"-r{restarts}"
    if len(base) + len(suffix) <= MAX_CHILD_NAME:
        return base + suffix
    return _shortened(kind, name, f"-{STAGE_BY_KIND[kind]}{suffix}")
