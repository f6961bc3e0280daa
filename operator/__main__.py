"""`python -m cotlab.operator`: the operator Deployment's command."""

import sys

from cotlab.operator.main import main

if __name__ == "__main__":
    sys.exit(main())
