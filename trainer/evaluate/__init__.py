"""The evaluate stage (EvalRun): a model in, many graded samples per benchmark problem out.

Reads: the benchmarks' problems (`cotlab.trainer.generation.benchmarks`) and the model, served by an engine from
`cotlab.trainer.generation`.
Writes: `<output>/samples/<benchmark>.jsonl` (one record per sample, appended as batches finish, so a restarted
pod resumes) and `<output>/scores.json` (pass@k, maj@k with standard errors, answer and truncation rates).
Pod contract: progress markers per batch (done/total); the summary carries `outputs` and `scores` per
benchmark. Entry point: `run_evaluate` in `cotlab.trainer.evaluate.stage`.
"""
