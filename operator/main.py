"""`python -m cotlab.operator` (and `cotctl operator run`): parse flags, then run kopf with cotlab's handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf

from .controller import Controller
from .handlers import registry
from .settings import settings_from


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cotlab.operator", description="The cotlab operator (kopf).")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    p.add_argument(
        "--standalone",
        action="store_true",
        default=True,
        help="run without kopf peering (the default: one replica, strategy Recreate, never two at once)",
    )
    p.add_argument("--peering", metavar="NAME", help="use kopf peering NAME instead of --standalone")
    p.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (COTLAB_METRICS_PORT, default 9090)")
    p.add_argument("--trainer-image", help="image of curate and finetune pods (COTLAB_TRAINER_IMAGE)")
    p.add_argument("--evaluator-image", help="image of evaluate pods (COTLAB_EVALUATOR_IMAGE)")
    p.add_argument(
        "--artifact-root", help="default output store, pvc://CLAIM/prefix or s3://... (COTLAB_ARTIFACT_ROOT)"
    )
    p.add_argument("--resync-seconds", type=float, help="reconcile every resource at least this often")
    p.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings_from(
            trainer_image=args.trainer_image,
            evaluator_image=args.evaluator_image,
            artifact_root=args.artifact_root,
            resync_seconds=args.resync_seconds,
            metrics_port=args.metrics_port,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    logging.getLogger("kubernetes.client.rest").setLevel(logging.WARNING)
    if not args.verbose:  # kopf logs every watch event's handler at INFO: the controller logs what matters
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    memo = kopf.Memo(controller=Controller(settings, namespaces=args.namespace))
    asyncio.run(
        kopf.operator(
            registry=registry,
            memo=memo,
            standalone=args.peering is None,
            peering_name=args.peering,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
        )
    )
    return 0
