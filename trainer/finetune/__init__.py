"""The finetune stage (FineTuneRun): a base model plus a curated dataset in, a fine-tuned model out.

Reads: the dataset artifact (refused when its digest differs from the one the operator resolved) and the base
model (hub id + revision, or a URI).
Writes: checkpoints (model, optimizer, scheduler, RNG, data position) under the checkpoint directory, resumed
by a restarted pod; then the merged model (and the LoRA adapter) under the output URI. Rank 0 writes the
training curves (loss, learning rate, gradient norm, tokens/s, trained tokens per step) to `<output>/metrics/` as
JSONL and TensorBoard events, and to MLflow when `spec.tracking.mlflow` names a server.
Pod contract: a progress marker per optimizer step (step, totalSteps, epoch, loss, tokens/s); the summary
carries `outputs.model` (URI + digest), `outputs.metrics` and the last progress. Entry point: `run_finetune` in
`cotlab.trainer.finetune.stage`.
"""
