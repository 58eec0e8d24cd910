"""Setup for the self-checks: the repo root on sys.path (for `import tuning`), Keras on the torch backend."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("KERAS_BACKEND", "torch")
