"""The failures a pod reports as permanent: a spec that can never work, malformed input data, a trace too long.

The CLI maps them to `ExitCode.INVALID_SPEC`, `ExitCode.INVALID_INPUT` and `ExitCode.TRACE_TOO_LONG` (never
retried); any other exception is a retryable crash.
"""

from __future__ import annotations


class InvalidSpecError(ValueError):
    """The spec (or what the operator resolved for it) can never work; the message says which field."""


class InvalidInputError(ValueError):
    """The input data is malformed; the message names the file and line (or row) and what is wrong."""


class TraceTooLongError(InvalidInputError):
    """A training example is longer than training.maxSeqLength; refused rather than silently cut."""
