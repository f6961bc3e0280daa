"""Training curves: what rank 0 of a FineTuneRun writes per optimizer step, where, and where else it may send them.

Rank 0 appends one `StepMetrics` line per optimizer step to `<output>/metrics/steps.jsonl` and writes the same
values as TensorBoard scalars into `<output>/metrics/` (`tensorboard --logdir` it); with `spec.tracking.mlflow`
it also logs them to an MLflow tracking server. The pods write these files and `cotctl report` reads them, so the
record is defined here, once.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from .base import CamelModel, Name, ShortStr, Uri

METRICS_DIR = "metrics"
"""Under the run's output: the JSONL file and the TensorBoard event files (its FineTuneRun's status names it)."""

STEPS_FILE = "steps.jsonl"

# TensorBoard tags and MLflow keys, by StepMetrics field: the names the HF Trainer writes, so a dashboard built for
# TRL or the Trainer reads cotlab's runs too.
TENSORBOARD_TAGS = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "tokens_per_second": "train/tokens_per_second",
    "trained_tokens": "train/trained_tokens",
    "epoch": "train/epoch",
}
MLFLOW_KEYS = {field: tag.removeprefix("train/") for field, tag in TENSORBOARD_TAGS.items()}

# MLflow's own variables (mlflow.environment_variables), set in the pod from the Secret's keys.
MLFLOW_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
MLFLOW_TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"


class StepMetrics(CamelModel):
    """One optimizer step, as rank 0 saw it: loss is the progress marker's value for that step."""

    step: int = Field(ge=1)
    epoch: float
    loss: float
    learning_rate: float = Field(description="The rate this step's update used (before the scheduler stepped).")
    grad_norm: float | None = Field(
        default=None, description="Total gradient norm before clipping; None if not finite."
    )
    tokens_per_second: float = Field(description="Over this attempt so far, all processes, as in the marker.")
    trained_tokens: int = Field(ge=0, description="Label tokens trained on since step 1, all processes.")
    wall_time: float = Field(description="Unix time the step ended.")


_CREDENTIALS_RULE = "has(self.usernameKey) == has(self.passwordKey) && (has(self.usernameKey) || has(self.tokenKey))"
_CREDENTIALS_MESSAGE = "name usernameKey and passwordKey together, or tokenKey"


class MlflowCredentials(CamelModel):
    """Keys of a Secret in the run's namespace, passed to the pod by reference as MLflow's own variables."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [{"rule": _CREDENTIALS_RULE, "message": _CREDENTIALS_MESSAGE}]
        }
    }

    secret_name: Name
    username_key: ShortStr | None = Field(default=None, description=f"Becomes {MLFLOW_USERNAME_ENV}.")
    password_key: ShortStr | None = Field(default=None, description=f"Becomes {MLFLOW_PASSWORD_ENV}.")
    token_key: ShortStr | None = Field(default=None, description=f"Becomes {MLFLOW_TOKEN_ENV} (a bearer token).")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.username_key is None) != (self.password_key is None) or (
            self.username_key is None and self.token_key is None
        ):
            raise ValueError(_CREDENTIALS_MESSAGE)
        return self

    def secret_env(self) -> dict[str, str]:
        """Environment variable -> key of the Secret, for the keys that are named."""
        named = {
            MLFLOW_USERNAME_ENV: self.username_key,
            MLFLOW_PASSWORD_ENV: self.password_key,
            MLFLOW_TOKEN_ENV: self.token_key,
        }
        return {variable: key for variable, key in named.items() if key is not None}


class MlflowTracking(CamelModel):
    """An MLflow tracking server that rank 0 logs the curves and the hyperparameters to."""

    uri: Annotated[Uri, Field(pattern=r"^https?://")]
    experiment: Annotated[str, Field(min_length=1, max_length=256)]
    run_name: ShortStr | None = Field(default=None, description="Default: the FineTuneRun's name.")
    credentials: MlflowCredentials | None = None


class Tracking(CamelModel):
    """Where the training curves go besides the run's own metrics directory."""

    mlflow: MlflowTracking | None = None
