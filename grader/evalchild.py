"""Child entry point, run sandboxed: load one exported model (compile=False) and write its predictions for given images.

    python -m grader.evalchild MODEL.keras IMAGES.npy PREDICTIONS.npy

It sees the test images and never the labels; the grader computes the accuracy.
Exit codes: 0 done, 3 the model does not load, 4 it does not predict.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    model_path, images_path, out_path = (argv if argv is not None else sys.argv[1:])[:3]
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import numpy as np
    import keras

    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the submission's, reported as one line
        print(f"model does not load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 3
    images = np.load(images_path, allow_pickle=False)
    try:
        outputs = []
        for start in range(0, len(images), 1000):
            outputs.append(np.asarray(model.predict(images[start:start + 1000], verbose=0)))
        scores = np.concatenate(outputs)
    except Exception as exc:  # noqa: BLE001
        print(f"model does not predict on {images.shape[1:]} images: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 4
    labels = scores.argmax(axis=-1) if scores.ndim == 2 else scores.reshape(len(scores))
    np.save(out_path, labels.astype(np.int64), allow_pickle=False)
    print(f"backend={keras.backend.backend()} predictions={len(labels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
