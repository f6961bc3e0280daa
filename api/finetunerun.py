"""FineTuneRun: light supervised fine-tuning of a base model on a TraceDataset."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from .base import CamelModel, LocalObjectRef, ResourceRequirements, ShortStr, StatusModel, Uri
from .conditions import Condition
from .models import ModelSource, Pinned
from .tracedataset import Artifact
from .tracking import Tracking
from .workload import WORKLOAD_RULES, QueueStatus, WorkloadSpec

Method = Literal["full", "lora"]
Schedule = Literal["cosine", "linear", "constant", "constant_with_warmup"]
Precision = Literal["bf16", "fp16", "fp32"]
# DeepSpeed left the API: its engine owns accumulation, clipping and the optimizer step, which the training loop
# does itself (per-token loss over the whole step), so an accepted `deepspeed` could only ever fail at run time.
Strategy = Literal["fsdp", "ddp"]
GPU_RESOURCE = "nvidia.com/gpu"


class LoraSettings(CamelModel):
    """peft LoraConfig knobs; only valid with method: lora."""

    r: int = Field(default=16, ge=1, le=1024)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: Annotated[list[ShortStr], Field(min_length=1, max_length=64)] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class Training(CamelModel):
    """Hyperparameters. The study does not publish its own; defaults follow s1/LIMO (lr 1e-5, cosine)."""

    epochs: float = Field(default=3.0, gt=0.0, le=1000.0)
    max_steps: int | None = Field(default=None, ge=1, description="Overrides epochs when set.")
    learning_rate: float = Field(default=1e-5, gt=0.0, le=1.0)
    schedule: Schedule = "cosine"
    warmup_ratio: float = Field(default=0.05, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    per_device_batch_size: int = Field(default=1, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    max_seq_length: int = Field(default=16384, ge=16, le=1048576, description="Longer traces are refused, never cut.")
    packing: bool = Field(default=True, description="Padding-free batches of whole examples.")
    gradient_checkpointing: bool | None = Field(
        default=None,
        description="Recompute activations in backward to save memory. Unset: on only when the run's memory estimate"
        " without it exceeds 85% of the device's (trainer/finetune/memory.py).",
    )
    torch_compile: bool = Field(
        default=False,
        description="torch.compile the parts of each decoder layer (attention projections, MLP, norms). How a run"
        " computes, not what it trains: left out of the spec digest, so a resume may switch it. Needs a C compiler"
        " in the trainer's image (Triton builds its launchers at run time); cotlab's image has none, and a run"
        " asking for it there fails at start.",
    )
    precision: Precision = Field(
        default="bf16",
        description="bf16/fp16: autocast over fp32 master weights (FSDP reduces gradients in fp32); a LoRA run's"
        " frozen base is held in bf16 under bf16. The residual stream between layers is fp32 for a full fine-tune"
        " in one process or under DDP, and in the low precision under FSDP (its forward runs on low-precision"
        " copies of the weights, as torchtitan's does) and for a LoRA run's bf16 base. Where the hardware lacks"
        " it (a CPU), fp32 with a warning.",
    )
    seed: int = Field(default=0, ge=0)
    save_every_steps: int | None = Field(default=None, ge=1, description="Unset: a checkpoint per epoch.")


class Distributed(CamelModel):
    """How many processes train: `nodes` pods, each with one process per GPU (or `cpuProcessesPerNode` on CPU)."""

    nodes: int = Field(default=1, ge=1, le=1024, description="Pods of the Indexed Job; the node rank is the index.")
    gpus_per_node: int = Field(
        default=0, ge=0, le=64, description=f"One process per GPU; must equal the {GPU_RESOURCE} request. 0: CPU."
    )
    cpu_processes_per_node: int = Field(
        default=1, ge=1, le=64, description="Processes per pod on CPU (gloo), used only when gpusPerNode is 0."
    )
    strategy: Strategy = "fsdp"

    @property
    def processes_per_node(self) -> int:
        """Processes the launcher starts in each pod."""
        return self.gpus_per_node or self.cpu_processes_per_node

    @property
    def world_size(self) -> int:
        """Training processes over all nodes."""
        return self.nodes * self.processes_per_node


class Output(CamelModel):
    uri: Uri | None = Field(default=None, description="Where the model goes; the operator's store if unset.")


def _gpu_count_cel(field: str) -> str:
    return (
        f"(has(self.resources) && has(self.resources.{field}) && '{GPU_RESOURCE}' in self.resources.{field}"
        f" ? string(self.resources.{field}['{GPU_RESOURCE}']) : '0')"
    )


# A limit wins over a request, as the scheduler reads it; int-or-string quantities compare as strings.
_GPUS_AGREE_RULE = (
    f"(has(self.resources) && has(self.resources.limits) && '{GPU_RESOURCE}' in self.resources.limits"
    f" ? {_gpu_count_cel('limits')} : {_gpu_count_cel('requests')})"
    " == string(has(self.distributed) && has(self.distributed.gpusPerNode) ? self.distributed.gpusPerNode : 0)"
)
_GPUS_AGREE_MESSAGE = (
    f"distributed.gpusPerNode must equal the resources' {GPU_RESOURCE} request (limit if set), which is 0 when absent"
)


def gpu_request(resources: ResourceRequirements) -> int | None:
    """The GPU count the pod asks for (its limit, else its request, else 0); None if it is not a whole number."""
    quantity = resources.limits.get(GPU_RESOURCE, resources.requests.get(GPU_RESOURCE, 0))
    try:
        return int(quantity)
    except ValueError:
        return None


class FineTuneRunSpec(WorkloadSpec):
    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                *WORKLOAD_RULES,
                {
                    "rule": "!has(self.lora) || self.method == 'lora'",
                    "message": "lora is only allowed with method: lora",
                },
                {
                    "rule": _GPUS_AGREE_RULE,
                    "message": _GPUS_AGREE_MESSAGE,
                },
            ]
        }
    }

    base_model: ModelSource
    dataset_ref: LocalObjectRef
    method: Method = "full"
    lora: LoraSettings | None = None
    training: Training = Field(default_factory=Training)
    distributed: Distributed = Field(default_factory=Distributed)
    suspend: bool = False
    max_retries: int = Field(default=3, ge=0, le=100)
    output: Output = Field(default_factory=Output)
    tracking: Tracking | None = Field(default=None, description="An MLflow server for the training curves.")

    @model_validator(mode="after")
    def _lora_only_with_lora(self) -> Self:
        if self.lora is not None and self.method != "lora":
            raise ValueError("lora is only allowed with method: lora")
        return self

    @model_validator(mode="after")
    def _gpus_agree(self) -> Self:
        requested = gpu_request(self.resources)
        if requested != self.distributed.gpus_per_node:
            raise ValueError(
                f"{_GPUS_AGREE_MESSAGE}: gpusPerNode is {self.distributed.gpus_per_node}, resources ask for {requested}"
            )
        return self


# Where and how the pods run, not what they train: changing these never invalidates a checkpoint. The dataset
# reference is left out too, as the dataset's digest stands for what it resolved to.
NOT_TRAINING_FIELDS = frozenset(
    {
        "suspend",
        "max_retries",
        "output",
        "dataset_ref",
        "resources",
        "node_selector",
        "tolerations",
        "queue_name",
        "image",
        "service_account_name",
        "pod_template_overrides",
        "tracking",
    }
)


# Within `training`: how the steps are computed, not what they compute. (gradientCheckpointing is one too, but it
# was digested before this list existed: leaving it out now would refuse the resumes of runs already started.)
NOT_TRAINING_SETTINGS = frozenset({"torch_compile"})


def training_fields(spec: FineTuneRunSpec) -> dict[str, Any]:
    """The spec's training-relevant parts (base model, method, LoRA, training, distributed), defaults filled in."""
    exclude: dict[str, Any] = dict.fromkeys(NOT_TRAINING_FIELDS, True) | {"training": set(NOT_TRAINING_SETTINGS)}
    return spec.model_dump(mode="json", by_alias=True, exclude=exclude)


def training_spec_digest(spec: FineTuneRunSpec) -> str:
    """sha256 of the canonical JSON of `training_fields`, so an explicit default and an omitted field digest alike."""
    canonical = json.dumps(training_fields(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def recipe_fields(spec: FineTuneRunSpec) -> dict[str, Any]:
    """What a run trains whatever its seed: `training_fields` without `training.seed`. FineTuneRuns with equal
    recipes on one dataset are training seeds of one arm (`cotctl compare` groups them so)."""
    fields = training_fields(spec)
    fields["training"] = {k: v for k, v in fields["training"].items() if k != "seed"}
    return fields


class Progress(StatusModel):
    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    tokens_per_second: float | None = None
    percent: float | None = None
    eta_seconds: float | None = None


class FineTuneOutputs(StatusModel):
    model: Artifact | None = None
    metrics: Uri | None = Field(default=None, description="The training curves: steps.jsonl and TensorBoard files.")


class EndedAttempt(StatusModel):
    """An attempt of a multi-node run that ended before the run did: every rank was stopped and started again."""

    attempt: int = Field(ge=1)
    reason: ShortStr
    message: Annotated[str, Field(max_length=4096)] = ""
    last_step: int | None = Field(default=None, description="The newest step reported before it ended.")
    ended_at: datetime | None = None


class FineTuneRunStatus(StatusModel):
    phase: ShortStr | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    observed_generation: int | None = None
    progress: Progress | None = None
    last_checkpoint: Uri | None = None
    outputs: FineTuneOutputs | None = None
    pinned: Pinned = Field(default_factory=list, description="The base model at its commit (or digest).")
    queue: QueueStatus | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    attempts: int = 0
    restarts: int = Field(
        default=0,
        description="Multi-node runs: how often every rank was restarted (the Job's cotlab.dev/restart-attempt).",
    )
    ended_attempts: Annotated[list[EndedAttempt], Field(max_length=128)] = Field(default_factory=list)
    failed_attempts: int = Field(
        default=0,
        description="Multi-node runs: attempts ended by a failed rank, all of them (endedAttempts keeps the newest);"
        " the run fails when they reach spec.maxRetries.",
    )
