"""The curate stage (TraceDataset): traces in, one content-addressed training set out.

Reads: the spec's source (a URI, a hub dataset, a ConfigMap, or a teacher model generating traces that are
graded against the reference answers), validating every record and naming a bad one by line.
Writes: `<output>/traces.jsonl` (training examples in selection order) and `<output>/manifest.json` (sha256
digest, count, token-length statistics).
Pod contract: progress markers while loading and selecting; the summary carries `artifact` (URI + digest),
`count` and `stats`. Entry point: `run_curate` in `cotlab.trainer.curate.stage`.
"""
