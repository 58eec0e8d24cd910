"""Child entry point, run sandboxed: load exported models (compile=False) and write their predictions for given images.

    python -m grader.evalchild IMAGES.npy REPORT.json MODEL.keras [MODEL.keras ...]

For each model it writes MODEL.predictions.npy (predicted class per image) next to the
model, and REPORT.json maps each model's file name to null (done) or a one-line error.
It sees the test images and never the labels; the grader computes the accuracy.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def predict(model_path: Path, images: "object") -> str | None:
    """Write the predictions of one model; return None, or what went wrong."""
    import keras
    import numpy as np

    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the submission's, reported as one line
        return f"the model does not load: {_one_line(exc)}"
    try:
        scores = np.concatenate([np.asarray(model.predict(images[i:i + 1000], verbose=0))
                                 for i in range(0, len(images), 1000)])
    except Exception as exc:  # noqa: BLE001
        return f"the model does not predict on {images.shape[1:]} images: {_one_line(exc)}"
    labels = scores.argmax(axis=-1) if scores.ndim == 2 else scores.reshape(len(scores))
    np.save(model_path.with_suffix(".predictions.npy"), labels.astype(np.int64), allow_pickle=False)
    return None


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    images_path, report_path, models = Path(args[0]), Path(args[1]), [Path(a) for a in args[2:]]
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import numpy as np

    images = np.load(images_path, allow_pickle=False)
    report = {model.name: predict(model, images) for model in models}
    report_path.write_text(json.dumps(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
