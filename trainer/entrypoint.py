"""The pod entry point: `python -m cotlab.trainer <stage> --spec FILE`.

Runs one stage, writes the summary to the termination message file, and exits with an `ExitCode`:
2 for a spec that can never work, 3 for malformed input data, 4 for a trace longer than the maximum length
(all three never retried), 1 for anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from cotlab.api.podcontract import (
    SPEC_PATH,
    STAGE_BY_KIND,
    TERMINATION_LOG,
    TERMINATION_LOG_ENV,
    ExitCode,
    PodSpecFile,
    write_summary,
)
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError, TraceTooLongError

logger = logging.getLogger(__name__)

STAGES = tuple(STAGE_BY_KIND.values())


def _curate(pod: PodSpecFile) -> dict[str, Any]:
    from cotlab.trainer.curate.stage import (
        run_curate,  # imported per stage: each image carries only its stage's dependencies
    )

    return run_curate(pod)


def _evaluate(pod: PodSpecFile) -> dict[str, Any]:
    from cotlab.trainer.evaluate.stage import (
        run_evaluate,  # imported per stage: each image carries only its stage's dependencies
    )

    return run_evaluate(pod)


def _finetune(pod: PodSpecFile) -> dict[str, Any]:
    from cotlab.trainer.finetune.stage import run_finetune  # torch, transformers, peft, accelerate

    return run_finetune(pod)


RUNNERS: dict[str, Callable[[PodSpecFile], dict[str, Any]]] = {
    "curate": _curate,
    "evaluate": _evaluate,
    "finetune": _finetune,
}


def _launch_finetune(pod: PodSpecFile, spec_path: str, log_level: str) -> int | None:
    """Start the training processes when the spec asks for several (see `cotlab.trainer.finetune.launch`);
    None when this process trains itself."""
    from cotlab.api.finetunerun import FineTuneRunSpec
    from cotlab.trainer.finetune.launch import launch_plan, launch_workers

    try:
        distributed = FineTuneRunSpec.model_validate(pod.spec).distributed
    except ValidationError:
        return None  # the stage itself reports the invalid spec
    plan = launch_plan(distributed, os.environ, run_id=pod.resource.name)
    if plan is None:
        return None
    argv = ["-m", "cotlab.trainer", "--log-level", log_level, "finetune", "--spec", spec_path]
    launched = launch_workers(plan, argv)
    if launched.message is not None:
        return _fail("finetune", ExitCode(launched.code), launched.message, signal=launched.signal)
    return launched.code


def termination_log_path() -> str:
    """Where the summary goes: `COTLAB_TERMINATION_LOG`, else the kubelet's `/dev/termination-log`."""
    return os.environ.get(TERMINATION_LOG_ENV, TERMINATION_LOG)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cotlab.trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    stages = parser.add_subparsers(dest="stage", required=True)
    for stage in STAGES:
        sub = stages.add_parser(stage, help=f"run the {stage} stage")
        sub.add_argument("--spec", default=SPEC_PATH, help=f"the pod spec file (default {SPEC_PATH})")
    return parser


def _report(summary: dict[str, Any]) -> None:
    path = termination_log_path()
    try:
        write_summary(summary, path)
    except OSError as exc:  # outside a pod /dev/termination-log may not be writable: the logs still say it all
        logger.warning("could not write the termination message", extra={"path": path, "error": str(exc)})


def _fail(stage: str, code: ExitCode, message: str, *, signal: str | None = None) -> int:
    logger.error("%s failed: %s", stage, message)
    _report({"stage": stage, "error": message, "exitCode": int(code)} | ({"signal": signal} if signal else {}))
    return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a stage and return its exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    stage: str = args.stage
    runner = RUNNERS[stage]
    try:
        pod = PodSpecFile.load(args.spec)
    except (OSError, ValidationError, ValueError) as exc:
        return _fail(stage, ExitCode.INVALID_SPEC, f"{args.spec}: cannot read the pod spec file: {exc}")
    if pod.stage != stage:
        return _fail(stage, ExitCode.INVALID_SPEC, f"{args.spec}: stage is {pod.stage!r}, but {stage!r} was run")
    try:
        launched = _launch_finetune(pod, args.spec, args.log_level) if stage == "finetune" else None
        if launched is not None:
            return launched
        summary = runner(pod)
    except InvalidSpecError as exc:
        return _fail(stage, ExitCode.INVALID_SPEC, str(exc))
    except TraceTooLongError as exc:  # before its base class InvalidInputError
        return _fail(stage, ExitCode.TRACE_TOO_LONG, str(exc))
    except InvalidInputError as exc:
        return _fail(stage, ExitCode.INVALID_INPUT, str(exc))
    except Exception as exc:  # noqa: BLE001 - anything else is a crash the Job retries
        logger.exception("%s crashed", stage)
        return _fail(stage, ExitCode.RETRYABLE, f"{type(exc).__name__}: {exc}")
    if summary:  # the main process of several reports; the others return nothing
        _report(summary)
    return int(ExitCode.OK)
