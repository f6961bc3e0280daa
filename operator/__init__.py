"""cotlab.operator: TraceDataset, FineTuneRun and EvalRun reconciled into Jobs.

    builders    what a resource becomes (the spec ConfigMap and the Job): pure
    reducers    what its status says, from the Job, the pods and the newest progress marker: pure
    policy      what the operator refuses to build (images, service accounts a spec may not choose)
    controller  the cache, the work queue and the reconcile that ties them together
    handlers    kopf's watches, feeding the controller
    settings    images, artifact store, allow-lists, timings (COTLAB_* variables and flags)

This file imports nothing, on purpose: with the repository root on sys.path (pytest's `pythonpath`, or python
started there) this folder is also importable as a top-level `operator`, and torch._dynamo re-imports the
standard library's `operator` fresh (`import_fresh_module("operator")`). An import here would then run, half
initialised, inside pydantic's own `from operator import attrgetter`.
"""
