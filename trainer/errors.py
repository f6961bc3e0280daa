"""The two failures a pod reports as permanent: a spec that can never work, and malformed input data.

The CLI maps them to `ExitCode.INVALID_SPEC` and `ExitCode.INVALID_INPUT` (never retried); any other
exception is a retryable crash.
"""

from __future__ import annotations


class InvalidSpecError(ValueError):
    """The spec (or what the operator resolved for it) can never work; the message says which field."""


class InvalidInputError(ValueError):
    """The input data is malformed; the message names the file and line (or row) and what is wrong."""
