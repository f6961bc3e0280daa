"""What users type: KIND/NAME references, label selectors, durations, --for; and one-line API errors."""

from __future__ import annotations

from typing import Any

import pytest

from cotlab.cli.cluster.kube import explain_api_error
from cotlab.cli.commands.wait import WaitFor, parse_for, verdict
from cotlab.cli.resources.refs import BadReference, Ref, parse_ref
from cotlab.cli.resources.selectors import label_matcher
from cotlab.cli.terminal.durations import human_duration, parse_duration
from cotlab.cli.terminal.errors import UsageError


@pytest.mark.parametrize(
    ("text", "kwargs", "want"),
    [
        ("evalrun/after", {}, Ref("EvalRun", "after")),
        ("ER/after", {}, Ref("EvalRun", "after")),
        ("finetuneruns", {}, Ref("FineTuneRun")),
        ("td", {}, Ref("TraceDataset")),
        ("after", {"default_kind": "EvalRun"}, Ref("EvalRun", "after")),
        ("evals/after", {"default_kind": "EvalRun"}, Ref("EvalRun", "after")),
    ],
    ids=["kind-name", "short-name-any-case", "plural", "short-kind", "bare-name", "plural-with-default"],
)
def test_references(text: str, kwargs: dict[str, Any], want: Ref) -> None:
    assert parse_ref(text, **kwargs) == want


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("pods/x", {}, "unknown kind 'pods'; valid kinds: tracedataset, finetunerun, evalrun"),
        ("evalrun", {"need_name": True}, "name the resource as KIND/NAME, e.g. evalrun/my-run"),
        ("evalrun/", {}, "expected KIND/NAME"),
        ("ftr/tune", {"default_kind": "EvalRun"}, "expected a EvalRun, got a FineTuneRun"),
    ],
    ids=["unknown-kind", "name-needed", "empty-name", "wrong-kind"],
)
def test_bad_references_say_what_is_valid(text: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BadReference, match=message.replace("(", r"\(")):
        parse_ref(text, **kwargs)


LABELS = {"cotlab.dev/experiment": "study", "cotlab.dev/arm": "qwq", "tier": "gold"}


@pytest.mark.parametrize(
    ("selector", "want"),
    [
        (None, True),
        ("cotlab.dev/experiment=study", True),
        ("cotlab.dev/experiment==study,cotlab.dev/arm!=base", True),
        ("cotlab.dev/arm=base", False),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("cotlab.dev/arm in (qwq, human-stage4)", True),
        ("cotlab.dev/arm notin (qwq),tier", False),
        ("missing in (a,b)", False),
        ("missing notin (a,b)", True),
    ],
)
def test_label_selectors_read_as_the_api_server_reads_them(selector: str | None, want: bool) -> None:
    assert label_matcher(selector)(LABELS) is want


def test_unreadable_selector_names_the_flag() -> None:
    with pytest.raises(UsageError, match="--selector: cannot read 'a=b=c'"):
        label_matcher("a=b=c")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("45s", 45.0), ("5m", 300.0), ("1h30m", 5400.0), ("2d", 172800.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, flag="--timeout") == seconds


def test_bad_duration_names_the_flag() -> None:
    with pytest.raises(UsageError, match="--since: cannot read duration '5 minutes'"):
        parse_duration("5 minutes", flag="--since")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (4.4, "4s"), (200, "3m20s"), (600, "10m"), (3 * 3600 + 300, "3h5m"), (36 * 3600, "1d12h"),
     (12 * 86400, "12d")],
)  # fmt: skip
def test_human_durations_are_kubectl_short(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [("condition=Ready", WaitFor("Ready")), ("condition=Ready=False", WaitFor("Ready", "False")),
     ("delete", WaitFor(None))],
)  # fmt: skip
def test_wait_for(text: str, want: WaitFor) -> None:
    assert parse_for(text) == want


def test_wait_for_refuses_what_it_cannot_wait_for() -> None:
    with pytest.raises(UsageError, match="--for: cannot read 'jsonpath=.status'"):
        parse_for("jsonpath=.status")


def body(generation: int, *conditions: tuple[str, str, int]) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "status": {"conditions": [
            {"type": t, "status": s, "reason": "R", "message": "m", "observedGeneration": g} for t, s, g in conditions
        ]},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "wanted", "want"),
    [
        (body(1, ("Ready", "True", 1)), WaitFor("Ready"), (True, None)),
        (body(2, ("Ready", "True", 1)), WaitFor("Ready"), (False, None)),
        (body(1, ("Running", "True", 1)), WaitFor("Ready"), (False, None)),
        (body(1, ("Failed", "True", 1)), WaitFor("Ready"), (False, "it failed (R): m")),
        (body(1, ("Failed", "True", 1)), WaitFor("Failed"), (True, None)),
        (None, WaitFor("Ready"), (False, "it was deleted")),
        (None, WaitFor(None), (True, None)),
        (body(1), WaitFor(None), (False, None)),
    ],
    ids=["ready", "ready-of-an-older-generation", "running", "failed", "waiting-for-failed", "deleted",
         "delete-done", "delete-pending"],
)  # fmt: skip
def test_wait_verdict(stored: dict[str, Any] | None, wanted: WaitFor, want: tuple[bool, str | None]) -> None:
    assert verdict(stored, wanted) == want


FORBIDDEN = (
    '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"evalruns.cotlab.dev is forbidden: User '
    '\\"system:serviceaccount:ns:nobody\\" cannot list resource \\"evalruns\\" in API group \\"cotlab.dev\\" in the '
    'namespace \\"ns\\"","reason":"Forbidden","details":{"group":"cotlab.dev","kind":"evalruns"},"code":403}'
)
NOT_FOUND = (
    '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"evalruns.cotlab.dev \\"x\\" not found",'
    '"reason":"NotFound","details":{"name":"x","group":"cotlab.dev","kind":"evalruns"},"code":404}'
)


@pytest.mark.parametrize(
    ("status", "body_", "name", "message", "hint"),
    [
        (403, FORBIDDEN, None, 'forbidden: you may not list evalruns.cotlab.dev in namespace "ns"',
         "kubectl auth can-i list evalruns.cotlab.dev -n ns"),
        (404, "404 page not found\n", None,
         "the cluster does not serve evalruns.cotlab.dev: the cotlab CRDs are not installed",
         "kubectl apply -k manifests/crds"),
        (404, NOT_FOUND, "x", 'evalruns.cotlab.dev "x" not found in namespace "ns"', "cotctl status -n ns"),
        (401, '{"kind":"Status","code":401}', None, "the cluster rejected the credentials (401 Unauthorized)",
         "--context"),
        (500, '{"kind":"Status","reason":"InternalError","message":"etcd timeout"}', None,
         "list evalruns.cotlab.dev: HTTP 500 InternalError: etcd timeout", None),
    ],
    ids=["forbidden", "no-crds", "not-found", "unauthorized", "server-error"],
)  # fmt: skip
def test_api_errors_are_one_line_with_the_next_step(
    status: int, body_: str, name: str | None, message: str, hint: str | None
) -> None:
    err = explain_api_error(status, body_, verb="list", resource="evalruns.cotlab.dev", namespace="ns", name=name)
    assert err.message == message
    assert (hint is None and err.hint is None) or (hint is not None and hint in (err.hint or ""))
