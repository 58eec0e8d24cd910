"""Re-train claimed configurations fast: a plain-PyTorch twin of the assignment's baseline CNN, one configuration per
single-thread process on CPU, several configurations of one architecture trained together on a GPU.

The twin is reference/tuning.py's ``build_model`` trained as ``CNNHyperModel.fit`` trains it, written out in PyTorch:

* layers: Conv2D(filters, k, same, relu) -> MaxPooling2D(2) -> Conv2D(2*filters, k, same, relu) -> MaxPooling2D(2)
  -> Flatten (channels-last order, as Keras flattens NHWC) -> Dropout(rate) -> Dense(64, relu) -> Dense(10, softmax);
* initialisers: glorot_uniform kernels (limit sqrt(6 / (fan_in + fan_out)), a conv's fans times its receptive
  field), zero biases; the kernels are kept in Keras' layouts ((k, k, in, out) conv, (in, out) dense);
* loss: sparse categorical cross-entropy computed from the softmax probabilities as Keras does (normalised, clipped
  to [1e-7, 1 - 1e-7], -log), averaged over the batch, plus the kernel penalty of the conv and hidden dense kernels,
  ``l1 * sum(|w|) + l2 * sum(w**2)`` (Keras' L1, L2 and L1L2: no 1/2 on L2);
* optimizer: Keras' Adam (beta_1 0.9, beta_2 0.999, epsilon 1e-7 added to sqrt(v), the bias correction folded into
  the step size as Keras folds it; torch.optim.Adam places epsilon differently, so it is written out here);
* training: the examples shuffled each epoch, the last batch partial, inverted dropout; after each epoch the whole
  validation split is evaluated (val_loss includes the penalty, as Keras' does). A configuration's figure is its best
  epoch's validation accuracy, with that epoch's validation loss (tunekit.recorder.trial_record's choice).

Randomness is per configuration and seeded: a CPU generator seeded with ``seed`` draws the initial kernels and each
epoch's order, a generator on the training device seeded with ``seed`` draws the dropout masks. The same
configuration, seed and device give the same outcome, alone or trained in a group.

Grouping (the GPU path, and ``grouped=True`` anywhere): configurations with the same (filters, kernel_size,
batch_size) share every tensor shape and step count, so they are trained as one model with a leading member axis:
the convolutions run as one grouped convolution (``groups`` = members), the dense layers as batched matrix products,
Adam on the stacked parameters with a learning rate per member. This is the explicit form of what
torch.func.stack_module_state + vmap would do, without vmap's per-call overhead. A member whose epochs are done leaves
the group; the others go on. Different batch sizes are not grouped: they differ in batch shape and step count.

On CPU, ``train_many`` runs one single-thread process per core, each training one configuration at a time: measured
on 2 cores, grouping gave nothing there, while a process per core gave 1.86x. The workers are fresh interpreters
(``python -m grader.fasttrain --worker``), not multiprocessing's spawn: spawn re-imports the caller's main module in
every worker, which for a caller that imports Keras (a benchmark, a notebook) costs seconds per worker. The data are
written once to a temp folder and loaded once per worker; tasks and outcomes travel as JSON lines, never pickle.

The grader's own process never imports torch: ``Config``, ``Outcome`` and ``train_many`` are torch-free here, and the
training runs in the spawned workers. ``train`` and ``train_group`` train in the calling process (tests, benchmarks,
and workers) and import torch when called.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from grader.errors import GraderError

if TYPE_CHECKING:
    import torch

    from tunekit.data import TrainVal

DENSE_UNITS = 64  # reference/tuning.py DENSE_UNITS
KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): Adam's epsilon and the cross-entropy's clip
BETA_1, BETA_2 = 0.9, 0.999  # keras.optimizers.Adam defaults
EVAL_CHUNK = 1000  # validation examples per forward pass
KEY_DIGITS = 9  # significant digits a configuration's key keeps


class FastTrainError(GraderError):
    """A configuration the fast trainer cannot train (a bad value, an unavailable device); the message says which."""


def _canonical(value: float) -> float:
    return float(f"{float(value):.{KEY_DIGITS}g}")


@dataclass(frozen=True)
class Config:
    """One configuration of the baseline CNN and its training: the contract's hyperparameters, l1 and l2 optional."""

    learning_rate: float
    batch_size: int
    epochs: int
    filters: int
    kernel_size: int
    dropout: float
    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise FastTrainError(f"hyperparameter {f.name} must be a number, not {value!r}")
            if not math.isfinite(float(value)):
                raise FastTrainError(f"hyperparameter {f.name} must be finite, not {value!r}")
        for name in ("batch_size", "epochs", "filters", "kernel_size"):
            value = getattr(self, name)
            if float(value) != int(value) or int(value) < 1:
                raise FastTrainError(f"hyperparameter {name} must be a positive whole number, not {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("learning_rate", "dropout", "l1", "l2"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.learning_rate <= 0:
            raise FastTrainError(f"hyperparameter learning_rate must be above 0, not {self.learning_rate!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise FastTrainError(f"hyperparameter dropout must be in [0, 1), not {self.dropout!r}")
        if self.l1 < 0 or self.l2 < 0:
            raise FastTrainError(f"hyperparameters l1 and l2 must be 0 or above, not {self.l1!r} and {self.l2!r}")

    @classmethod
    def from_hyperparameters(cls, values: Mapping[str, Any]) -> "Config":
        """A Config from a trial's hyperparameter dict (other names ignored; l1 and l2 default to 0)."""
        missing = [f.name for f in fields(cls) if f.name not in values and f.name not in ("l1", "l2")]
        if missing:
            raise FastTrainError(f"hyperparameters {', '.join(missing)} missing: the fast trainer needs each of them")
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def key(self) -> tuple[tuple[str, float], ...]:
        """Hashable canonical form: each value rounded to 9 significant digits (0.1+0.2 and 0.3 are one key)."""
        return tuple((f.name, _canonical(getattr(self, f.name))) for f in fields(self))

    def shape_key(self) -> tuple[int, int, int]:
        """What a group shares: the tensor shapes (filters, kernel_size) and the step count (batch_size)."""
        return (self.filters, self.kernel_size, self.batch_size)


@dataclass(frozen=True)
class Outcome:
    """One trained configuration: the best epoch's validation accuracy and loss (None when training diverged),
    the per-epoch history (loss, accuracy, val_loss, val_accuracy; None where not finite) and its training seconds."""

    config: Config
    val_accuracy: float | None
    val_loss: float | None
    history: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------- the twin (torch, in the caller)


def _glorot_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int, generator: "torch.Generator") -> "torch.Tensor":
    import torch

    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * limit


def init_params(config: Config, image_shape: Sequence[int], num_classes: int,
                generator: "torch.Generator") -> list["torch.Tensor"]:
    """Initial parameters in Keras' layouts and order: conv1 kernel (k, k, c, f), bias; conv2 kernel, bias;
    dense kernel (7*7*2f, 64), bias; output kernel (64, classes), bias."""
    import torch

    height, width, channels = image_shape
    f, k = config.filters, config.kernel_size
    flat = (height // 2 // 2) * (width // 2 // 2) * 2 * f
    kernels = [((k, k, channels, f), k * k * channels, k * k * f),
               ((k, k, f, 2 * f), k * k * f, k * k * 2 * f),
               ((flat, DENSE_UNITS), flat, DENSE_UNITS),
               ((DENSE_UNITS, num_classes), DENSE_UNITS, num_classes)]
    params = []
    for shape, fan_in, fan_out in kernels:
        params.append(_glorot_uniform(shape, fan_in, fan_out, generator))
        params.append(torch.zeros(shape[-1]))
    return params


def forward(params: Sequence["torch.Tensor"], x: "torch.Tensor", masks: "torch.Tensor | None" = None
            ) -> "torch.Tensor":
    """Softmax probabilities (G, B, classes) of G stacked members (params with a leading member axis) on their own
    NCHW batches x (G, B, C, H, W); masks (G, B, features) are the scaled dropout masks, None for no dropout."""
    import torch
    import torch.nn.functional as F

    w1, b1, w2, b2, w3, b3, w4, b4 = params
    groups, batch, channels, height, width = x.shape
    h = x.transpose(0, 1).reshape(batch, groups * channels, height, width)
    for kernel, bias in ((w1, b1), (w2, b2)):  # (G, k, k, in, out) -> grouped (G*out, in, k, k)
        g, k1, k2, cin, cout = kernel.shape
        weight = kernel.permute(0, 4, 3, 1, 2).reshape(g * cout, cin, k1, k2)
        h = F.max_pool2d(F.relu(F.conv2d(h, weight, bias.reshape(-1), padding="same", groups=g)), 2)
    cout, hh, ww = h.shape[1] // groups, h.shape[2], h.shape[3]
    h = h.reshape(batch, groups, cout, hh, ww).permute(1, 0, 3, 4, 2).reshape(groups, batch, hh * ww * cout)
    if masks is not None:
        h = h * masks
    h = F.relu(torch.baddbmm(b3.unsqueeze(1), h, w3))
    return torch.softmax(torch.baddbmm(b4.unsqueeze(1), h, w4), dim=-1)


def cross_entropy(probs: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """Keras' sparse categorical cross-entropy from probabilities, per example: (G, B, classes), (G, B) -> (G, B)."""
    import torch

    probs = probs / probs.sum(dim=-1, keepdim=True)
    probs = torch.clip(probs, KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return -torch.log(probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1))


def penalty(params: Sequence["torch.Tensor"], l1: "torch.Tensor", l2: "torch.Tensor") -> "torch.Tensor":
    """Keras' kernel penalty per member (G,): l1*sum|w| + l2*sum(w**2) over the conv and hidden dense kernels."""
    import torch

    total = torch.zeros(params[0].shape[0], device=params[0].device)
    for kernel in (params[0], params[2], params[4]):
        flat = kernel.reshape(kernel.shape[0], -1)
        total = total + l1 * flat.abs().sum(dim=1) + l2 * flat.square().sum(dim=1)
    return total


def _as_tensors(data: "TrainVal", device: str) -> tuple["torch.Tensor", ...]:
    import torch

    def images(x: np.ndarray) -> torch.Tensor:  # NHWC float32 -> NCHW
        return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 3, 1, 2))).to(device)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)

    return images(data.x_train), labels(data.y_train), images(data.x_val), labels(data.y_val)


def _resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FastTrainError(f"device {device!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU")
    return device


def train(config: Config, data: "TrainVal", *, seed: int, device: str = "cpu") -> Outcome:
    """Train one configuration in this process; the same config, data, seed and device give the same Outcome."""
    return train_group([config], data, seed=seed, device=device)[0]


def train_group(configs: Sequence[Config], data: "TrainVal", *, seed: int, device: str | None = "cpu",
                num_classes: int = 10) -> list[Outcome]:
    """Train configurations that share (filters, kernel_size, batch_size) together as one stacked model, in this
    process; each member's result equals its training alone with the same seed (within float tolerance)."""
    if not configs:
        return []
    if len({c.shape_key() for c in configs}) != 1:
        raise FastTrainError("train_group needs configurations with one (filters, kernel_size, batch_size); "
                             f"got {sorted({c.shape_key() for c in configs})}")
    device = _resolve_device(device)
    x, y, xv, yv = _as_tensors(data, device)
    return _train_stack(list(configs), (x, y, xv, yv), seed=seed, device=device, num_classes=num_classes)


def _train_stack(configs: list[Config], tensors: tuple["torch.Tensor", ...], *, seed: int, device: str,
                 num_classes: int) -> list[Outcome]:
    import torch

    x, y, xv, yv = tensors
    n, batch_size = len(x), configs[0].batch_size
    image_shape = (x.shape[2], x.shape[3], x.shape[1])
    cpu_gens = [torch.Generator().manual_seed(seed) for _ in configs]  # initial kernels, then each epoch's order
    drop_gens = [torch.Generator(device=device).manual_seed(seed) for _ in configs]  # dropout masks
    members = [init_params(c, image_shape, num_classes, g) for c, g in zip(configs, cpu_gens)]
    params = [torch.stack([m[i] for m in members]).to(device).requires_grad_() for i in range(len(members[0]))]
    moments = [torch.zeros_like(p) for p in params]
    velocities = [torch.zeros_like(p) for p in params]
    active = list(range(len(configs)))  # indices into configs of the members still training
    histories: list[dict[str, list[float | None]]] = [
        {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []} for _ in configs]
    seconds = [0.0] * len(configs)
    step = 0
    features = params[4].shape[1]

    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    for epoch in range(max(c.epochs for c in configs)):
        started = time.perf_counter()
        live = [configs[i] for i in active]
        lr, l1, l2 = (column([getattr(c, a) for c in live]) for a in ("learning_rate", "l1", "l2"))
        rates = [c.dropout for c in live]
        penalised = any(c.l1 > 0 or c.l2 > 0 for c in live)
        order = torch.stack([torch.randperm(n, generator=cpu_gens[i]) for i in active]).to(device)
        loss_sum = torch.zeros(len(active), device=device)
        correct = torch.zeros(len(active), device=device)
        for begin in range(0, n, batch_size):
            idx = order[:, begin:begin + batch_size]
            xb, yb = x[idx], y[idx]
            masks = None
            if any(rates):
                masks = torch.stack([
                    (torch.rand((idx.shape[1], features), generator=drop_gens[i], device=device) >= r).float() / (1 - r)
                    if r > 0 else torch.ones((idx.shape[1], features), device=device)
                    for i, r in zip(active, rates)])
            probs = forward(params, xb, masks)
            per_member = cross_entropy(probs, yb).mean(dim=1)
            if penalised:
                per_member = per_member + penalty(params, l1, l2)
            grads = torch.autograd.grad(per_member.sum(), params)
            step += 1
            adam_step(params, grads, moments, velocities, lr, step)
            with torch.no_grad():
                loss_sum += per_member.detach() * idx.shape[1]
                correct += (probs.argmax(dim=-1) == yb).sum(dim=1)
        val_loss, val_acc = _evaluate(params, xv, yv, l1, l2)
        train_loss, train_acc = (loss_sum / n).tolist(), (correct / n).tolist()
        spent = (time.perf_counter() - started) / len(active)
        for j, i in enumerate(active):
            hist = histories[i]
            hist["loss"].append(_finite(train_loss[j]))
            hist["accuracy"].append(_finite(train_acc[j]))
            hist["val_loss"].append(_finite(val_loss[j]))
            hist["val_accuracy"].append(_finite(val_acc[j]))
            seconds[i] += spent
        keep = [j for j, i in enumerate(active) if configs[i].epochs > epoch + 1]
        if len(keep) < len(active):  # members whose epochs are done leave the group
            pick = torch.tensor(keep, dtype=torch.long, device=device)
            params = [p.detach()[pick].requires_grad_() for p in params]
            moments = [m[pick] for m in moments]
            velocities = [v[pick] for v in velocities]
            active = [active[j] for j in keep]
        if not active:
            break
    return [_outcome(c, h, s) for c, h, s in zip(configs, histories, seconds)]


def adam_step(params: list["torch.Tensor"], grads: Sequence["torch.Tensor"], moments: list["torch.Tensor"],
               velocities: list["torch.Tensor"], lr: "torch.Tensor", step: int) -> None:
    """keras.optimizers.Adam.update_step on stacked members, each with its own learning rate (float32, as Keras)."""
    import torch

    one = np.float32(1)
    scale = np.sqrt(one - np.float32(BETA_2) ** np.float32(step)) / (one - np.float32(BETA_1) ** np.float32(step))
    alpha = lr * float(scale)
    with torch.no_grad():
        torch._foreach_lerp_(moments, list(grads), 1 - BETA_1)  # m += (g - m) * (1 - beta_1)
        torch._foreach_lerp_(velocities, torch._foreach_mul(grads, grads), 1 - BETA_2)
        denom = torch._foreach_sqrt(velocities)
        torch._foreach_add_(denom, KERAS_EPSILON)
        updates = torch._foreach_div(moments, denom)
        torch._foreach_mul_(updates, [alpha.reshape((-1,) + (1,) * (p.dim() - 1)) for p in params])
        torch._foreach_sub_(params, updates)


def _evaluate(params: Sequence["torch.Tensor"], xv: "torch.Tensor", yv: "torch.Tensor", l1: "torch.Tensor",
              l2: "torch.Tensor") -> tuple[list[float], list[float]]:
    """Validation loss (mean cross-entropy plus the penalty, as Keras reports it) and accuracy of every member."""
    import torch

    groups = params[0].shape[0]
    with torch.no_grad():
        loss = torch.zeros(groups, device=xv.device, dtype=torch.float64)
        correct = torch.zeros(groups, device=xv.device)
        for begin in range(0, len(xv), EVAL_CHUNK):
            xb = xv[begin:begin + EVAL_CHUNK].unsqueeze(0).expand(groups, *xv[begin:begin + EVAL_CHUNK].shape)
            yb = yv[begin:begin + EVAL_CHUNK].unsqueeze(0).expand(groups, -1)
            probs = forward(params, xb)
            loss += cross_entropy(probs, yb).sum(dim=1).double()
            correct += (probs.argmax(dim=-1) == yb).sum(dim=1)
        mean = loss / len(xv) + penalty(params, l1, l2).double()
        return mean.tolist(), (correct / len(xv)).tolist()


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _outcome(config: Config, history: dict[str, list[float | None]], seconds: float) -> Outcome:
    """The best epoch's figures, chosen as tunekit.recorder.trial_record chooses them."""
    accs = history["val_accuracy"]
    epochs = [i for i, a in enumerate(accs) if a is not None]
    val_acc = val_loss = None
    if epochs:
        best = max(epochs, key=lambda i: accs[i])  # the first of equal bests
        val_acc, val_loss = accs[best], history["val_loss"][best]
        if val_loss is None:
            val_acc = None
    return Outcome(config, val_acc, val_loss, {k: tuple(v) for k, v in history.items()}, round(seconds, 4))


# --------------------------------------------------------------------------- many configurations (torch-free here)

def _cost(config: Config) -> float:
    """A rough relative cost, to start the longest configurations first."""
    return config.epochs * config.filters * config.kernel_size ** 2 * (1 + 8 / config.batch_size)


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _cuda_visible() -> bool:
    """Whether a CUDA GPU is likely visible, decided without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def train_many(configs: Sequence[Config], data: "TrainVal", *, seed: int, workers: int | None = None,
               device: str | None = None, grouped: bool | None = None, num_classes: int = 10,
               on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Train every configuration (one Outcome per input, in order; equal keys are trained once) in spawned workers;
    on_outcome, when given, gets each distinct configuration's Outcome as soon as it is trained (to save progress).

    device None: CUDA when a GPU is visible, else CPU. On CPU: `workers` single-thread processes (default: one per
    core), one configuration at a time. On CUDA (or grouped=True): configurations sharing (filters, kernel_size,
    batch_size) are trained together as one stacked model, in one worker (default) per device. workers=0 trains in
    this process instead (torch's default threads), for comparisons.
    """
    if not configs:
        return []
    if device is None:
        device = "cuda" if _cuda_visible() else "cpu"
    on_gpu = device.startswith("cuda")
    grouped = on_gpu if grouped is None else grouped
    unique: dict[tuple[Any, ...], Config] = {}
    for config in configs:
        unique.setdefault(config.key(), config)
    if grouped:
        by_shape: dict[tuple[int, int, int], list[Config]] = {}
        for config in unique.values():
            by_shape.setdefault(config.shape_key(), []).append(config)
        tasks = list(by_shape.values())
    else:
        tasks = [[c] for c in unique.values()]
    tasks.sort(key=lambda task: -sum(_cost(c) for c in task))
    if workers is None:
        workers = 1 if on_gpu or grouped else default_workers()
    if workers == 0:
        device = _resolve_device(device)
        tensors = _as_tensors(data, device)
        results = []
        for task in tasks:
            results.append(_train_stack(task, tensors, seed=seed, device=device, num_classes=num_classes))
            for outcome in results[-1] if on_outcome else ():
                on_outcome(outcome)
    else:
        results = _run_workers(tasks, data, seed=seed, workers=min(workers, len(tasks)), device=device,
                               threads=None if on_gpu else 1, num_classes=num_classes, on_outcome=on_outcome)
    done = {o.config.key(): o for outcomes in results for o in outcomes}
    return [replace(done[c.key()], config=c) for c in configs]


def _run_workers(tasks: list[list[Config]], data: "TrainVal", *, seed: int, workers: int, device: str,
                 threads: int | None, num_classes: int, on_outcome: Callable[[Outcome], None] | None = None
                 ) -> list[list[Outcome]]:
    """Train the tasks in `workers` fresh interpreters (python -m grader.fasttrain --worker), each given the next task
    as it finishes one; the data go through a temp folder, loaded once per worker; tasks and outcomes are JSON lines."""
    results: list[list[Outcome] | None] = [None] * len(tasks)
    with tempfile.TemporaryDirectory(prefix="fasttrain-") as folder:
        for name in _ARRAYS:
            np.save(Path(folder) / f"{name}.npy", np.asarray(getattr(data, name)))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        if threads is not None:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        command = [sys.executable, "-m", "grader.fasttrain", "--worker", folder, "--device", device]
        if threads is not None:
            command += ["--threads", str(threads)]
        procs: list[subprocess.Popen[str]] = []
        try:
            for i in range(workers):
                errors = open(Path(folder) / f"worker{i}.err", "w+", encoding="utf-8")  # noqa: SIM115
                procs.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                              text=True, env=env))
            pending = list(range(len(tasks)))
            busy: dict[int, int] = {}  # worker index -> task index
            with selectors.DefaultSelector() as selector:
                for i, proc in enumerate(procs):
                    selector.register(proc.stdout, selectors.EVENT_READ, i)  # type: ignore[arg-type]
                    if pending:
                        busy[i] = pending.pop(0)
                        _send(proc, tasks[busy[i]], seed, num_classes)
                while busy:
                    for key, _ in selector.select():
                        i = key.data
                        line = procs[i].stdout.readline()  # type: ignore[union-attr]
                        reply = _reply(line, procs[i], Path(folder) / f"worker{i}.err")
                        done = results[busy.pop(i)] = [_outcome_from_json(o) for o in reply["outcomes"]]
                        for outcome in done if on_outcome else ():
                            on_outcome(outcome)
                        if pending:
                            busy[i] = pending.pop(0)
                            _send(procs[i], tasks[busy[i]], seed, num_classes)
        finally:
            for proc in procs:
                if proc.stdin:
                    proc.stdin.close()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.stdout:
                    proc.stdout.close()
    return [r for r in results if r is not None]


_ARRAYS = ("x_train", "y_train", "x_val", "y_val")


def _send(proc: "subprocess.Popen[str]", task: list[Config], seed: int, num_classes: int) -> None:
    message = {"seed": seed, "num_classes": num_classes, "configs": [asdict(c) for c in task]}
    proc.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]


def _reply(line: str, proc: "subprocess.Popen[str]", errors: Path) -> dict[str, Any]:
    """A worker's answer, or FastTrainError with the last line it wrote to stderr."""
    try:
        reply = json.loads(line) if line else None
    except ValueError:
        reply = None
    if isinstance(reply, dict) and isinstance(reply.get("outcomes"), list):
        return reply
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        raise FastTrainError(f"fast trainer: {reply['error']}")
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    tail = [ln for ln in errors.read_text("utf-8", errors="replace").splitlines() if ln.strip()][-1:]
    raise FastTrainError(f"fast trainer worker exited (status {proc.returncode}) without an answer"
                         + (f": {tail[0][:300]}" if tail else ""))


def _outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    return {"config": asdict(outcome.config), "val_accuracy": outcome.val_accuracy, "val_loss": outcome.val_loss,
            "history": {k: list(v) for k, v in outcome.history.items()}, "seconds": outcome.seconds}


def _outcome_from_json(raw: dict[str, Any]) -> Outcome:
    return Outcome(Config(**raw["config"]), raw["val_accuracy"], raw["val_loss"],
                   {k: tuple(v) for k, v in raw["history"].items()}, raw["seconds"])


def _worker(folder: Path, device: str, threads: int | None) -> int:
    """The worker loop: load the data once, then answer each task line on stdin with one outcome line on stdout."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the answers
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    try:
        resolved = _resolve_device(device)
    except FastTrainError as exc:
        protocol.write(json.dumps({"error": str(exc)}) + "\n")
        protocol.flush()
        return 1
    arrays = {name: np.load(folder / f"{name}.npy") for name in _ARRAYS}
    tensors = _as_tensors(_Arrays(**arrays), resolved)
    for line in sys.stdin:
        try:
            task = json.loads(line)
            configs = [Config(**c) for c in task["configs"]]
            outcomes = _train_stack(configs, tensors, seed=int(task["seed"]), device=resolved,
                                    num_classes=int(task["num_classes"]))
            answer: dict[str, Any] = {"outcomes": [_outcome_to_json(o) for o in outcomes]}
        except Exception as exc:  # noqa: BLE001  (reported to the parent, which raises it as one line)
            answer = {"error": f"training failed: {type(exc).__name__}: {exc}"}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()
    return 0


@dataclass(frozen=True)
class _Arrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="fast trainer worker (started by grader.fasttrain.train_many)")
    parser.add_argument("--worker", required=True, type=Path, help="folder holding x_train.npy .. y_val.npy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    return _worker(args.worker, args.device, args.threads)


if __name__ == "__main__":
    raise SystemExit(main())
