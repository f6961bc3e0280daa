"""Children's names: unique for every resource name, valid, and short enough for a label, at and around the cut."""

from __future__ import annotations

import re

import pytest

from cotlab.api.children import LABEL_NAME, MAX_CHILD_NAME, attempt_job_name, child_labels, child_name
from cotlab.api.podcontract import STAGE_BY_KIND

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def names_around_the_cut(kind: str) -> list[str]:
    """Resource names whose child name is just under, at and just over 63 characters, and the longest ones."""
    fits = MAX_CHILD_NAME - len(STAGE_BY_KIND[kind]) - 1
    names = [("a" * (fits + delta)) for delta in (-1, 0, 1, 2)]
    names += [("a" * (fits - 1)) + "b", "x" * 253, "x" * 252 + "y", "run"]
    # Names that end like a shortened name (`-` and 8 hex digits): the shortened form of a long name above...
    names += [child_name(kind, n).removesuffix(f"-{STAGE_BY_KIND[kind]}") for n in names if len(n) > fits]
    names += ["run-deadbeef", "run-deadbeef-2"]  # ...and short ones
    return names


@pytest.mark.parametrize("kind", sorted(STAGE_BY_KIND))
def test_child_names_are_unique_valid_and_fit(kind: str) -> None:
    names = names_around_the_cut(kind)
    jobs = {name: [attempt_job_name(kind, name, restarts) for restarts in (0, 1, 12)] for name in names}
    every = [job for attempts in jobs.values() for job in attempts]
    assert len(set(every)) == len(every), "two resources' Jobs share a name"
    assert all(len(job) <= MAX_CHILD_NAME and DNS_LABEL.match(job) for job in every), every
    assert all(child_name(kind, name) == attempts[0] for name, attempts in jobs.items())
    labels = [child_labels(kind, name)[LABEL_NAME] for name in names]
    assert len(set(labels)) == len(labels), "two resources' children carry the same name label"
    assert all(len(label) <= 63 and LABEL_VALUE.match(label) for label in labels), labels


def test_names_that_fit_are_kept_as_they_are() -> None:
    assert child_name("TraceDataset", "qwq-20") == "qwq-20-curate"
    assert child_labels("TraceDataset", "qwq-20")[LABEL_NAME] == "qwq-20"
    fits = "a" * (MAX_CHILD_NAME - len("-curate"))
    assert child_name("TraceDataset", fits) == fits + "-curate"


def test_a_name_is_never_given_to_a_long_name_s_shortened_form() -> None:
    """The review's case: a 70-character name and a resource named like its cut-plus-hash form."""
    long = "t" * 70
    shortened = child_name("TraceDataset", long)
    impostor = shortened.removesuffix("-curate")
    assert child_name("TraceDataset", impostor) != shortened
