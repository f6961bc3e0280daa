"""cotlab.trainer: what runs inside the pods, one package per stage.

    curate/      TraceDataset  -> traces.jsonl + manifest.json (digest, stats)
    finetune/    FineTuneRun   -> a fine-tuned model (+ adapter), checkpoints on the way
    evaluate/    EvalRun       -> per-sample records + scores.json
    generation/  engines (vLLM, transformers), prompts and benchmark problems: evaluation and teacher curation
    grading/     answer extraction, Math-Verify equivalence, pass@k / maj@k: reusable outside cotlab
    core/        what every stage needs: storage URIs, artifacts, JSONL, errors, pretrained loading, the
                 training-example format
    entrypoint   `python -m cotlab.trainer <stage> --spec FILE`: the pod contract's command

Stages never import each other (checked by import-linter, `.importlinter`).
"""
