"""The API's names, without its models: group, version, and what each kind is called.

Kept free of pydantic on purpose. Readers that only need names (`cotctl status`, shell completion, the kube
client's URL paths) import this module and never pay for building the typed models; `resources.py` extends
these names with the models and printer columns.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "cotlab.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class KindNames:
    """Every name of one kind, as kubectl and the API server spell it."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]


# In dependency order: an EvalRun may use a FineTuneRun, which uses a TraceDataset, never the other way.
KINDS: tuple[KindNames, ...] = (
    KindNames("TraceDataset", "tracedatasets", "tracedataset", ("td", "traces")),
    KindNames("FineTuneRun", "finetuneruns", "finetunerun", ("ftr", "ft")),
    KindNames("EvalRun", "evalruns", "evalrun", ("er", "evals")),
)
KIND_NAMES_BY_KIND = {k.kind: k for k in KINDS}
# Dependencies only point down KINDS, so sorting by this is a topological order and no cycle is possible.
KIND_ORDER = {k.kind: i for i, k in enumerate(KINDS)}
