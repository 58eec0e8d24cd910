"""Child entry point, run sandboxed: load one exported model (compile=False) and write its predictions for given images.

    python -m grader.evalchild IMAGES.npy MODEL.keras PREDICTIONS.npy REPORT.json

It writes PREDICTIONS.npy (the predicted class per image, int64) and REPORT.json
(`grader.protocol.EvalReport`: null error when done, else one line saying what went
wrong). It sees the test images and never the labels; the grader computes the
accuracy. The grader runs one child per model, each in its own sandbox and time box,
so a model that crashes, hangs or exhausts memory costs only its own points.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from grader.protocol import EvalReport

BATCH = 1000


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def predict(model_path: Path, images_path: Path, predictions_path: Path) -> str | None:
    """Write the predictions of one model; return None, or what went wrong."""
    import keras
    import numpy as np

    images = np.load(images_path, allow_pickle=False)
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the submission's, reported as one line
        return f"the model does not load: {_describe(exc)}"
    try:
        scores = np.concatenate([np.asarray(model.predict(images[i:i + BATCH], verbose=0))
                                 for i in range(0, len(images), BATCH)])
    except Exception as exc:  # noqa: BLE001
        return f"the model does not predict on {images.shape[1:]} images: {_describe(exc)}"
    if scores.ndim != 2 or scores.shape[0] != len(images):
        return (f"the model gives outputs of shape {tuple(scores.shape)} for {len(images)} images; "
                "expected one row of class scores per image")
    np.save(predictions_path, scores.argmax(axis=-1).astype(np.int64), allow_pickle=False)
    return None


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    images, model, predictions, report = (Path(a) for a in args)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    error = predict(model, images, predictions)
    report.write_text(json.dumps(EvalReport(error).to_json()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
