"""The rendezvous NetworkPolicy example selects the pods the operator makes for a multi-node FineTuneRun and opens
the port their rendezvous listens on."""

from __future__ import annotations

import yaml

from cotlab.api.podcontract import RENDEZVOUS_PORT, Inputs
from cotlab.operator.builders import build_children
from cotlab.operator.settings import OperatorSettings
from tests.conftest import REPO
from tests.unit.test_operator_builders import example

POLICY = yaml.safe_load((REPO / "manifests" / "network" / "finetune-ranks.yaml").read_text())


def test_the_policy_selects_a_multi_node_run_s_pods_and_opens_the_rendezvous_port() -> None:
    run = example("quickstart-lora", distributed={"nodes": 2, "gpusPerNode": 0, "strategy": "ddp"})
    job = build_children(run, Inputs(), OperatorSettings()).job
    labels = job["spec"]["template"]["metadata"]["labels"]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    selector = POLICY["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= labels.items()
    rendezvous, collectives = POLICY["spec"]["ingress"]
    for rule in (rendezvous, collectives):
        assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [selector]
    assert rendezvous["ports"] == [{"protocol": "TCP", "port": RENDEZVOUS_PORT}]
    assert env["MASTER_PORT"] == str(RENDEZVOUS_PORT)
    # An evaluate or curate pod is not selected: the policy opens nothing else.
    other = build_children(example("quickstart-before"), Inputs(), OperatorSettings()).job
    assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
