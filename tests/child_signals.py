"""Children that a test stops with SIGINT start with SIGINT at its default, whatever the test process inherited.

A background job of a non-interactive shell starts with SIGINT ignored (POSIX), an ignored signal stays ignored
across fork and exec, and Python turns SIGINT into KeyboardInterrupt only when it starts at SIG_DFL
(`signal.getsignal` in such a child returns SIG_IGN). So a `cotctl --watch` spawned by a pytest that was started
that way ignores the test's Ctrl-C and runs until the test's timeout, unless the child resets it first.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


def default_sigint() -> None:
    """In a child before exec (`preexec_fn=`, or after `pty.fork()`): SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def inherited_sigint(disposition: Any) -> Iterator[None]:
    """Children forked inside start with SIGINT at `disposition` (SIG_IGN: as a background job's do). A child made
    by a bare fork must exec before it leaves the block, or it restores the parent's handler on the way out."""
    before = signal.signal(signal.SIGINT, disposition)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
