"""The finetune stage: verify and tokenize the curated traces, train with accelerate, save the model, report.

Order matters for fast failures: the spec, the dataset digest and every example's length are checked with the
tokenizer alone, before the model is loaded. A hub base model is loaded at the commit its revision names when the
pod starts (`cotlab.trainer.core.revisions`), recorded with the dataset's digest in the summary ("pinned") and
in the model directory's `cotlab.json`. A restarted pod resumes from the newest complete checkpoint under
`<checkpointDir or output>/checkpoints/` and replays the same data order, provided that checkpoint was trained on
the same dataset (digest) and the same training-relevant spec (`training_spec_digest`); otherwise it refuses.
Rank 0 also writes the training curves (`curves.py`) under `<output>/metrics/`. The summary is
`{"stage": "finetune", "outputs": {"model": {"uri", "digest"}, "metrics": URI}, "progress": <last marker>}`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cotlab.api.finetunerun import FineTuneRunSpec, LoraSettings, Training, training_spec_digest
from cotlab.api.models import ModelSource, PinnedInput
from cotlab.api.podcontract import PodSpecFile
from cotlab.api.tracedataset import Artifact
from cotlab.trainer.core import storage
from cotlab.trainer.core.artifacts import directory_digest, read_verified
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.pretrained import generation_eos_ids, load_tokenizer
from cotlab.trainer.core.revisions import HubResolver, hub_commit, pin_model
from cotlab.trainer.finetune.accelerator import build_accelerator, prepare
from cotlab.trainer.finetune.attention import register_segment_attention
from cotlab.trainer.finetune.batches import StepPlan, flatten_batch, flattening_supported, pad_batch, plan_steps
from cotlab.trainer.finetune.checkpoints import (
    CHECKPOINTS_DIR,
    START,
    TrainingPosition,
    check_resumable,
    latest_checkpoint,
    save_trainable_weights_only,
)
from cotlab.trainer.finetune.compilation import compile_layer_parts
from cotlab.trainer.finetune.curves import TrainingCurves, metrics_dir
from cotlab.trainer.finetune.data import (
    TokenizedExample,
    end_of_turn_ids,
    parse_examples,
    tokenize_dataset,
    trains_on_chat,
)
from cotlab.trainer.finetune.loop import LoopSettings, run_loop
from cotlab.trainer.finetune.memory import estimate_memory
from cotlab.trainer.finetune.model import (
    base_dtype,
    enable_checkpointing,
    load_base_model,
    make_optimizer,
    prepare_for_training,
    save_model,
)

logger = logging.getLogger(__name__)


def _local_dir(uri: str, field: str) -> Path:
    path = storage.local_path(uri)
    if path is None:
        raise InvalidSpecError(
            f"{field}: {uri} is not a local path; finetune writes checkpoints and the model to file:// or pvc:// URIs"
        )
    return path


def _model_uri(output_uri: str, model_dir: Path) -> str:
    """The model's URI in the output's own scheme (a pvc:// output stays pvc://); plain paths become file://."""
    if "://" in output_uri:
        return storage.join(output_uri, model_dir.name)
    return model_dir.resolve().as_uri()


def _hyperparameters(spec: FineTuneRunSpec, dataset_digest: str, world_size: int) -> dict[str, Any]:
    """What an MLflow run records as its parameters: the training settings, flat, and what was trained."""
    params: dict[str, Any] = dict(spec.training.model_dump(mode="json", by_alias=True))
    params |= {"method": spec.method, "datasetDigest": dataset_digest, "worldSize": world_size}
    if spec.lora is not None:
        params |= {f"lora.{k}": v for k, v in spec.lora.model_dump(mode="json", by_alias=True).items()}
    return params


def _attention_for(packing: bool) -> str | None:
    """For flattened batches, flash attention on a GPU that has it, else attention.py's segment attention (sdpa
    per example: transformers' own sdpa would build a dense block mask); padded batches keep the model's default."""
    import torch
    from transformers.utils.import_utils import is_flash_attn_2_available

    if not packing:
        return None
    return (
        "flash_attention_2"
        if torch.cuda.is_available() and is_flash_attn_2_available()
        else register_segment_attention()
    )


AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def _needs_checkpointing(
    accelerator: Any,
    model: Any,
    lora: LoraSettings | None,
    examples: list[TokenizedExample],
    training: Training,
    *,
    flat: bool,
    sharded: bool,
) -> bool:
    """`gradientCheckpointing` unset: on when memory.py's estimate says the run would not fit without it. Rank 0
    decides for all (the ranks' inputs are the same, but one rank checkpointing alone would hang FSDP)."""
    import torch

    longest = sorted(e.length for e in examples)[-training.per_device_batch_size :]
    tokens = sum(longest) if flat else len(longest) * max(longest)  # the largest micro-batch
    autocast = AUTOCAST_DTYPES.get(str(accelerator.mixed_precision))
    estimate = estimate_memory(
        model,
        lora=lora,
        autocast=getattr(torch, autocast) if autocast else None,
        tokens=tokens,
        shards=accelerator.num_processes if sharded else 1,
        device=accelerator.device,
    )
    decision = [estimate is None or estimate.needs_checkpointing]
    if accelerator.num_processes > 1:
        torch.distributed.broadcast_object_list(decision, src=0)
    parts = (vars(estimate) if estimate else {}) | {"tokens": tokens}  # bytes
    logger.info("activation checkpointing: %s (estimate)", "on" if decision[0] else "off", extra=parts)
    return bool(decision[0])


def _dataset(pod: PodSpecFile) -> Artifact:
    if pod.inputs.dataset is None:
        raise InvalidSpecError("inputs.dataset: the operator did not resolve spec.datasetRef to an artifact")
    return pod.inputs.dataset


def _tokenized_examples(
    pod: PodSpecFile, spec: FineTuneRunSpec, source: ModelSource, tokenizer: Any
) -> tuple[list[TokenizedExample], frozenset[int]]:
    """The verified dataset, tokenized and length-checked (fails in seconds, before any model is loaded), and
    the token ids that end the turns it trains."""
    dataset = _dataset(pod)
    examples = parse_examples(read_verified(dataset), dataset.uri)
    end_ids = end_of_turn_ids(tokenizer, generation_eos_ids(source), chat=trains_on_chat(examples))
    tokenized = tokenize_dataset(tokenizer, examples, max_length=spec.training.max_seq_length, end_ids=end_ids)
    return tokenized, end_ids


def _resume(
    accelerator: Any, checkpoint_root: Path, plan: StepPlan, *, dataset_digest: str, spec_digest: str
) -> TrainingPosition:
    """Load the newest complete checkpoint, if any, and return where it left off; refuse one of other inputs."""
    found = latest_checkpoint(checkpoint_root)
    if found is None:
        return START
    path, position = found
    check_resumable(
        path, position, dataset_digest=dataset_digest, spec_digest=spec_digest, total_steps=plan.total_steps
    )
    accelerator.load_state(str(path))
    logger.info("resuming from a checkpoint", extra={"path": str(path), "step": position.step})
    return position


PROVENANCE_FILE = "cotlab.json"
"""In the saved model directory: what it was trained from (pinned base model and dataset), with which spec and seed."""


def _is_first_process() -> bool:
    """Rank 0 of the whole run (the one that reports), before accelerate has started: torchrun's RANK, else alone."""
    return os.environ.get("RANK", "0") == "0"


def run_finetune(pod: PodSpecFile, *, resolve: HubResolver = hub_commit) -> dict[str, Any]:
    """Run the finetune stage for `pod` and return the termination summary."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    try:
        spec = FineTuneRunSpec.model_validate(pod.spec)
    except ValidationError as exc:
        raise InvalidSpecError(f"spec: {exc}") from None
    # Every process resolves the hub revision (the same commit: seconds apart); only rank 0 hashes a local model.
    base = pin_model(pod.inputs.model or spec.base_model, "baseModel", resolve=resolve, digest=_is_first_process())
    training, source = spec.training, base.source
    output = _local_dir(pod.output, "output")
    checkpoint_root = _local_dir(pod.checkpoint_dir or pod.output, "checkpointDir") / CHECKPOINTS_DIR
    tokenizer = load_tokenizer(source)
    tokenized, end_ids = _tokenized_examples(pod, spec, source, tokenizer)

    accelerator = build_accelerator(training.precision, spec.distributed)
    set_seed(training.seed)  # before the model: LoRA's initial weights come from it
    # FSDP: one rank per node reads the weights, the others receive their shards (see load_base_model).
    sharded = spec.distributed.strategy == "fsdp" and accelerator.num_processes > 1
    lora = (spec.lora or LoraSettings()) if spec.method == "lora" else None
    model = load_base_model(
        source,
        attn_implementation=_attention_for(training.packing),
        weights=not sharded or accelerator.local_process_index == 0,
        dtype=base_dtype(lora=lora is not None, mixed_precision=str(accelerator.mixed_precision)),
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    flatten = flattening_supported(training.packing, model.config._attn_implementation)
    collate = flatten_batch if flatten else functools.partial(pad_batch, pad_id=pad_id)
    model = prepare_for_training(model, lora=lora)
    checkpointing = training.gradient_checkpointing
    if checkpointing is None:
        checkpointing = _needs_checkpointing(
            accelerator, model, lora, tokenized, training, flat=flatten, sharded=sharded
        )
    if checkpointing:
        enable_checkpointing(model)
    if training.torch_compile:
        compiled = compile_layer_parts(model, accelerator.device)
        logger.info("compiling the decoder layers' parts", extra={"modules": compiled})

    plan = plan_steps(
        len(tokenized),
        batch_size=training.per_device_batch_size,
        processes=accelerator.num_processes,
        accumulation=training.gradient_accumulation_steps,
        epochs=training.epochs,
        max_steps=training.max_steps,
    )
    optimizer = make_optimizer(model, learning_rate=training.learning_rate, weight_decay=training.weight_decay)
    scheduler = get_scheduler(
        training.schedule,
        optimizer,
        num_warmup_steps=round(training.warmup_ratio * plan.total_steps),
        num_training_steps=plan.total_steps,
    )
    model, optimizer = prepare(accelerator, model, optimizer)  # mends FSDP2's optimizer mapping
    # Not prepared: a prepared scheduler steps once per process per step. Registered, so checkpoints hold it.
    accelerator.register_for_checkpointing(scheduler)
    if lora is not None:
        save_trainable_weights_only(accelerator)  # a LoRA checkpoint is its adapter, not a copy of the base
    dataset_digest = _dataset(pod).digest
    # With the hub commit in place of the revision: a retry after `main` moved must not resume the old commit's run.
    spec_digest = training_spec_digest(spec.model_copy(update={"base_model": base.source}))
    start = _resume(accelerator, checkpoint_root, plan, dataset_digest=dataset_digest, spec_digest=spec_digest)
    logger.info(
        "training",
        extra={"examples": len(tokenized), "total_steps": plan.total_steps, "flat": flatten, "method": spec.method},
    )
    settings = LoopSettings(
        batch_size=training.per_device_batch_size,
        accumulation=training.gradient_accumulation_steps,
        max_grad_norm=training.max_grad_norm,
        seed=training.seed,
        save_every_steps=training.save_every_steps,
        checkpoint_root=checkpoint_root,
        dataset_digest=dataset_digest,
        spec_digest=spec_digest,
        bucket=not flatten,
    )
    curves = None
    if accelerator.is_main_process:  # one writer of the curves: rank 0
        curves = TrainingCurves(
            metrics_dir(output),
            first_step=start.step,
            mlflow=spec.tracking.mlflow if spec.tracking else None,
            run_name=pod.resource.name,
            params=_hyperparameters(spec, dataset_digest, accelerator.num_processes)
            | {"gradientCheckpointing": checkpointing},  # as decided, when the spec leaves it unset
        )
    try:
        last = run_loop(
            accelerator,
            model,
            optimizer,
            scheduler,
            examples=tokenized,
            collate=collate,
            plan=plan,
            settings=settings,
            start=start,
            curves=curves,
        )
    except BaseException:
        if curves is not None:
            curves.close(finished=False)
        raise
    last = last or {"step": plan.total_steps, "totalSteps": plan.total_steps, "percent": 100.0}

    accelerator.wait_for_everyone()
    gathered = accelerator.get_state_dict(model) if accelerator.num_processes > 1 else None  # every process calls it
    summary: dict[str, Any] = {}
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        model_dir = save_model(
            unwrapped,
            tokenizer,
            output=output,
            precision=training.precision,
            gathered=gathered,
            source=source,
            eos_token_ids=end_ids,
        )
        dataset = _dataset(pod)
        pinned = [base.record.to_wire(), PinnedInput(role="dataset", uri=dataset.uri, digest=dataset.digest).to_wire()]
        provenance = {"pinned": pinned, "trainingSpecDigest": spec_digest, "trainingSeed": training.seed}
        (model_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        model_artifact = {"uri": _model_uri(pod.output, model_dir), "digest": directory_digest(model_dir)}
        assert curves is not None
        curves.close(finished=True)
        outputs = {"model": model_artifact, "metrics": _model_uri(pod.output, curves.directory)}
        summary = {"stage": "finetune", "outputs": outputs, "progress": last, "pinned": pinned}
    accelerator.wait_for_everyone()
    return summary
