"""`python -m cotlab.trainer <stage> --spec FILE`: the container command of every cotlab pod."""

from __future__ import annotations

import sys

from cotlab.trainer.entrypoint import main

if __name__ == "__main__":
    sys.exit(main())
