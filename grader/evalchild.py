"""Child entry point, run sandboxed: load one exported model (compile=False) and write its predictions for given images.

    python -m grader.evalchild IMAGES.npy MODEL.keras PREDICTIONS.npy REPORT.json

It writes PREDICTIONS.npy (the predicted class per image, int64) and REPORT.json
(`grader.protocol.EvalReport`: null error when done, else one line saying what went
wrong; and the model's architecture once it loaded: input shape, layer class names,
Conv2D count, parameter count, within the protocol's bounds). It sees the test images
and never the labels; the grader computes the accuracy. The grader runs one child per model, each in its own sandbox and time box,
so a model that crashes, hangs or exhausts memory costs only its own points.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from grader.protocol import (
    MAX_AXIS,
    MAX_INPUT_AXES,
    MAX_LAYER_COUNT,
    MAX_LAYER_NAME,
    MAX_LAYERS_LISTED,
    MAX_PARAMS,
    EvalReport,
)
from grader.result import Architecture

BATCH = 1000


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def predict(model_path: Path, images_path: Path, predictions_path: Path) -> EvalReport:
    """Write the predictions of one model; return the report: what went wrong (or None), and the architecture."""
    import keras
    import numpy as np

    images = np.load(images_path, allow_pickle=False)
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the submission's, reported as one line
        return EvalReport(f"the model does not load: {_describe(exc)}")
    architecture = describe(model)
    try:
        scores = np.concatenate([np.asarray(model.predict(images[i:i + BATCH], verbose=0))
                                 for i in range(0, len(images), BATCH)])
    except Exception as exc:  # noqa: BLE001
        return EvalReport(f"the model does not predict on {images.shape[1:]} images: {_describe(exc)}", architecture)
    if scores.ndim != 2 or scores.shape[0] != len(images):
        return EvalReport(f"the model gives outputs of shape {tuple(scores.shape)} for {len(images)} images; "
                          "expected one row of class scores per image", architecture)
    np.save(predictions_path, scores.argmax(axis=-1).astype(np.int64), allow_pickle=False)
    return EvalReport(None, architecture)


def describe(model: object) -> Architecture | None:
    """A loaded model's architecture: a nested model's layers stand in its place (its InputLayer skipped), the walk
    stops at MAX_LAYER_COUNT layers; None when the model cannot be described (that costs the model nothing here)."""
    import keras

    try:
        names: list[str] = []
        count = conv2d = looked = 0
        stack = list(reversed(list(model.layers)))  # type: ignore[attr-defined]
        while stack and count < MAX_LAYER_COUNT and looked < 2 * MAX_LAYER_COUNT:
            layer = stack.pop()
            looked += 1
            name = type(layer).__name__
            if isinstance(layer, keras.Model):
                stack.extend(reversed(list(layer.layers)))
                continue
            if name == "InputLayer":
                continue
            count += 1
            conv2d += name == "Conv2D"
            if len(names) < MAX_LAYERS_LISTED:
                names.append(name[:MAX_LAYER_NAME])
        params = int(model.count_params())  # type: ignore[attr-defined]
        if not 0 <= params <= MAX_PARAMS:
            return None
        return Architecture(input_shape=_input_shape(getattr(model, "input_shape", None)), layers=tuple(names),
                            layer_count=count, conv2d=conv2d, params=params)
    except Exception:  # noqa: BLE001 - a model that cannot be described is still evaluated
        return None


def _input_shape(shape: object) -> tuple[int | None, ...] | None:
    """(28, 28, 1) of a model whose one input is (None, 28, 28, 1); None for several inputs or an odd shape."""
    if not isinstance(shape, tuple) or not 2 <= len(shape) <= MAX_INPUT_AXES + 1:
        return None
    axes = shape[1:]
    if not all(a is None or (isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= MAX_AXIS) for a in axes):
        return None
    return tuple(axes)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    images, model, predictions, report = (Path(a) for a in args)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    report.write_text(json.dumps(predict(model, images, predictions).to_json()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
