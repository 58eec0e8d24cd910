"""Command line for the reference solution: `python -m reference.run --profile quick --out DIR`."""

import sys

from reference.tuning import main

if __name__ == "__main__":
    sys.exit(main())
