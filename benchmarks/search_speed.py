"""Benchmark: the quick grid through KerasTuner (Keras on torch) against plain loops training the same CNN.

Prints seconds per trial and training samples per second for
  1. the reference's quick grid search (KerasTuner, Keras 3 on the torch backend),
  2. a plain Keras loop over the same 16 configurations (no tuner),
  3. a plain PyTorch loop over the same 16 configurations and the same architecture,
all in this one process on the same data, and the ratios against the PyTorch loop.

    KERAS_BACKEND=torch python benchmarks/search_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from reference import tuning  # noqa: E402
from tunekit import data  # noqa: E402
from tunekit.config import RunConfig  # noqa: E402


def keras_tuner_grid(ds: data.TrainVal, out: Path) -> tuple[float, int]:
    config = RunConfig(out=out, profile="quick")
    start = time.perf_counter()
    tuner = tuning.run_search("grid", tuning.grid_search_space("quick"), ds, config)
    return time.perf_counter() - start, len(tuner.oracle.trials)


def plain_keras(ds: data.TrainVal, configs: list[dict]) -> float:
    import keras_tuner as kt

    start = time.perf_counter()
    for values in configs:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        hp = kt.HyperParameters()
        for k, v in values.items():
            hp.Fixed(k, v)
        model = tuning.build_model(hp)
        model.fit(ds.x_train, ds.y_train, batch_size=values["batch_size"], epochs=values["epochs"], verbose=0,
                  validation_data=(ds.x_val, ds.y_val))
    return time.perf_counter() - start


class TorchCNN(nn.Module):
    """The reference's architecture written directly in PyTorch."""

    def __init__(self, filters: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.net = nn.Sequential(
            nn.Conv2d(1, filters, kernel_size, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(filters, 2 * filters, kernel_size, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(7 * 7 * 2 * filters, tuning.DENSE_UNITS), nn.ReLU(), nn.Linear(tuning.DENSE_UNITS, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def plain_torch(ds: data.TrainVal, configs: list[dict]) -> tuple[float, float]:
    x = torch.from_numpy(ds.x_train).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(ds.y_train.astype(np.int64))
    xv = torch.from_numpy(ds.x_val).permute(0, 3, 1, 2).contiguous()
    yv = torch.from_numpy(ds.y_val.astype(np.int64))
    best = 0.0
    start = time.perf_counter()
    for values in configs:
        torch.manual_seed(0)
        model = TorchCNN(values["filters"], values["kernel_size"], values["dropout"])
        opt = torch.optim.Adam(model.parameters(), lr=values["learning_rate"])
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(values["epochs"]):
            model.train()
            order = torch.randperm(len(x))
            for i in range(0, len(x), values["batch_size"]):
                idx = order[i:i + values["batch_size"]]
                opt.zero_grad()
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            best = max(best, float((model(xv).argmax(1) == yv).float().mean()))
    return time.perf_counter() - start, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="repeat each measurement and keep the fastest")
    args = parser.parse_args()
    ds = data.load_train_val("mnist", train_size=3000, val_size=1000, seed=0)
    configs = tuning.grid_search_space("quick").combinations()
    n, samples = len(configs), len(configs) * len(ds.x_train)
    print(f"torch {torch.__version__}, keras {keras.__version__}, {torch.get_num_threads()} threads; "
          f"{n} configurations x {len(ds.x_train)} images x 1 epoch")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["KerasTuner grid (Keras on torch)"] = min(keras_tuner_grid(ds, Path(tmp) / f"r{i}")[0] for i in range(args.repeat))
    results["plain Keras loop (no tuner)"] = min(plain_keras(ds, configs) for _ in range(args.repeat))
    torch_runs = [plain_torch(ds, configs) for _ in range(args.repeat)]
    results["plain PyTorch loop"] = min(t for t, _ in torch_runs)

    base = results["plain PyTorch loop"]
    print(f"{'run':36} {'s total':>8} {'s/trial':>8} {'samples/s':>10} {'vs torch':>9}")
    for name, seconds in results.items():
        print(f"{name:36} {seconds:8.2f} {seconds / n:8.3f} {samples / seconds:10.0f} {seconds / base:8.2f}x")
    print(f"(plain PyTorch best val accuracy {max(a for _, a in torch_runs):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
