"""cotlab.operator: TraceDataset, FineTuneRun and EvalRun reconciled into Jobs.

    builders       what a resource becomes (the spec ConfigMap and the Job): pure
    reducers       what its status says, from the Job, the pods and the newest progress marker: pure
    policy         what the operator refuses to build (what a spec may reach under the settings)
    controller     the work queue, the workers and the reconcile that ties the rest together
    informers      label-selected, paginated list-and-watch loops that fill the cache
    cache          the informers' objects, indexed, and whom each change concerns
    kubeapi        every request: throttled, timed out, counted, tied to its RBAC rule
    status_writer  status patches and transition events
    progress       the newest progress marker in a running pod's log
    workqueue      de-duplicating queue with per-key backoff
    handlers       kopf's part: login, start/stop, liveness
    settings       images, artifact store, allow-lists, timings (COTLAB_* variables and flags)

This file imports nothing, on purpose: with the repository root on sys.path (pytest's `pythonpath`, or python
started there) this folder is also importable as a top-level `operator`, and torch._dynamo re-imports the
standard library's `operator` fresh (`import_fresh_module("operator")`). An import here would then run, half
initialised, inside pydantic's own `from operator import attrgetter`.
"""
