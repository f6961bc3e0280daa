"""cotlab.trainer: what runs inside the pods (curation, fine-tuning, evaluation, grading, metrics)."""
