"""Tests for grader/fasttrain.py: the PyTorch twin computes what the Keras baseline computes, and trains reproducibly
alone, grouped and in worker processes."""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from grader import fasttrain  # noqa: E402
from grader.errors import GraderError  # noqa: E402
from grader.fasttrain import Config, FastTrainError  # noqa: E402
from reference import tuning  # noqa: E402
from tunekit import data  # noqa: E402


def keras_model(config: Config, input_shape: tuple[int, int, int] = (28, 28, 1)) -> keras.Model:
    hp = kt.HyperParameters()
    for name, value in vars(config).items():
        hp.Fixed(name, value)
    return tuning.build_model(hp, input_shape)


def twin_params_from(model: keras.Model) -> list[torch.Tensor]:
    """The Keras model's weights as the twin's stacked parameters (one member): both keep Keras' layouts."""
    return [torch.from_numpy(np.asarray(w)).unsqueeze(0).clone() for w in model.get_weights()]


@pytest.fixture(scope="module")
def small_mnist() -> data.TrainVal:
    """300 training and 100 validation images of the real MNIST train split."""
    return data.load_train_val("mnist", train_size=300, val_size=100, seed=0)


@pytest.fixture(scope="module")
def quick_mnist() -> data.TrainVal:
    """The quick profile's split, as the reference makes it."""
    train_size, val_size = tuning.PROFILE_DATA["quick"]
    return data.load_train_val("mnist", train_size=train_size, val_size=val_size, seed=0, shrink_to_fit=True)


BASE = Config(learning_rate=0.001, batch_size=32, epochs=1, filters=8, kernel_size=3, dropout=0.0)


def test_a_key_is_the_same_for_float_noise_and_int_or_float_spellings() -> None:
    a = Config(learning_rate=0.1 + 0.2, batch_size=32, epochs=1, filters=8, kernel_size=3, dropout=0.25)
    b = Config(learning_rate=0.3, batch_size=32.0, epochs=1.0, filters=8, kernel_size=3, dropout=0.25)  # type: ignore[arg-type]
    assert a.key() == b.key()
    assert len({a.key(), b.key(), BASE.key()}) == 2
    assert Config(**{**vars(a), "learning_rate": 0.30001}).key() != a.key()
    assert b.batch_size == 32 and isinstance(b.batch_size, int)


def test_a_config_refuses_values_the_model_cannot_take_with_one_line() -> None:
    with pytest.raises(FastTrainError, match=r"^hyperparameter dropout must be in \[0, 1\), not 1\.0$"):
        Config(**{**vars(BASE), "dropout": 1.0})
    with pytest.raises(GraderError, match=r"^hyperparameter filters must be a positive whole number, not 8\.5$"):
        Config(**{**vars(BASE), "filters": 8.5})
    with pytest.raises(FastTrainError, match=r"^hyperparameters epochs, dropout missing: the fast trainer needs each "):
        Config.from_hyperparameters({"learning_rate": 0.01, "batch_size": 32, "filters": 8, "kernel_size": 3})
    assert Config.from_hyperparameters({**vars(BASE), "lr_alias": 1, "l2": 1e-4}).l2 == 1e-4


@pytest.mark.parametrize(("config", "shape"), [
    (BASE, (28, 28, 1)),
    (Config(learning_rate=0.01, batch_size=64, epochs=2, filters=16, kernel_size=5, dropout=0.5), (32, 32, 3)),
])
def test_the_twin_has_the_keras_models_layer_shapes_and_parameter_count(config: Config, shape: tuple) -> None:
    model = keras_model(config, shape)
    params = fasttrain.init_params(config, shape, 10, torch.Generator().manual_seed(0))
    assert [tuple(p.shape) for p in params] == [tuple(w.shape) for w in model.weights]
    assert sum(p.numel() for p in params) == model.count_params()


def test_the_twin_initialises_as_glorot_uniform_with_zero_biases() -> None:
    config = Config(**{**vars(BASE), "filters": 16})
    params = fasttrain.init_params(config, (28, 28, 1), 10, torch.Generator().manual_seed(0))
    for kernel, fan_in, fan_out in ((params[0], 9, 9 * 16), (params[2], 9 * 16, 9 * 32), (params[4], 1568, 64)):
        limit = (6 / (fan_in + fan_out)) ** 0.5
        assert float(kernel.abs().max()) <= limit
        assert float(kernel.std()) == pytest.approx(limit / 3 ** 0.5, rel=0.1)  # a uniform's std
    assert all(float(b.abs().max()) == 0.0 for b in params[1::2])


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_the_twin_computes_the_keras_models_probabilities(small_mnist: data.TrainVal, kernel_size: int) -> None:
    """Same weights in, same softmax out: layer order, same padding, pooling and the channels-last flatten agree."""
    keras.utils.set_random_seed(1)
    model = keras_model(Config(**{**vars(BASE), "kernel_size": kernel_size, "dropout": 0.5}))
    x = small_mnist.x_val[:20]
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    xb = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).unsqueeze(0)
    got = fasttrain.forward(twin_params_from(model), xb)[0].detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(("l1", "l2"), [(1e-3, 0.0), (0.0, 1e-3), (1e-3, 2e-4)], ids=["L1", "L2", "elastic-net"])
def test_the_penalty_equals_keras_regularisation_loss(l1: float, l2: float) -> None:
    keras.utils.set_random_seed(2)
    model = keras_model(Config(**{**vars(BASE), "l1": l1, "l2": l2}))
    expected = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    got = fasttrain.penalty(twin_params_from(model), torch.tensor([l1]), torch.tensor([l2]))
    assert expected > 0
    assert float(got[0]) == pytest.approx(expected, rel=1e-5)


def test_three_training_steps_equal_keras_adam_loss_and_penalty_on_the_same_batches(small_mnist: data.TrainVal) -> None:
    """Keras' train_on_batch and the twin's step (cross-entropy from clipped probabilities, L2 without 1/2, Adam with
    epsilon 1e-7 outside the bias correction) move the same weights to the same place."""
    config = Config(**{**vars(BASE), "learning_rate": 0.01, "l2": 1e-3})
    keras.utils.set_random_seed(3)
    model = keras_model(config)
    params = [p.requires_grad_() for p in twin_params_from(model)]
    moments = [torch.zeros_like(p) for p in params]
    velocities = [torch.zeros_like(p) for p in params]
    for step in range(1, 4):
        xb, yb = small_mnist.x_train[32 * step:32 * (step + 1)], small_mnist.y_train[32 * step:32 * (step + 1)]
        keras_loss = float(model.train_on_batch(xb, yb)[0]) if step == 1 else None
        probs = fasttrain.forward(params, torch.from_numpy(xb.transpose(0, 3, 1, 2).copy()).unsqueeze(0))
        loss = (fasttrain.cross_entropy(probs, torch.from_numpy(yb.astype(np.int64)).unsqueeze(0)).mean(dim=1)
                + fasttrain.penalty(params, torch.tensor([0.0]), torch.tensor([1e-3])))
        if keras_loss is not None:
            assert float(loss[0].detach()) == pytest.approx(keras_loss, rel=1e-5)
        else:
            model.train_on_batch(xb, yb)
        grads = torch.autograd.grad(loss.sum(), params)
        fasttrain.adam_step(params, grads, moments, velocities, torch.tensor([config.learning_rate]), step)
    for got, expected in zip(params, model.get_weights()):
        np.testing.assert_allclose(got[0].detach().numpy(), expected, atol=2e-5)


def test_the_same_seed_gives_the_same_outcome_and_another_seed_another(small_mnist: data.TrainVal) -> None:
    config = Config(**{**vars(BASE), "dropout": 0.3, "epochs": 2})
    first = fasttrain.train(config, small_mnist, seed=0)
    again = fasttrain.train(config, small_mnist, seed=0)
    other = fasttrain.train(config, small_mnist, seed=1)
    assert first.history == again.history and first.val_accuracy == again.val_accuracy
    assert other.history != first.history
    assert set(first.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(first.history["val_accuracy"]) == 2
    best = max(range(2), key=lambda i: first.history["val_accuracy"][i])
    assert (first.val_accuracy, first.val_loss) == (first.history["val_accuracy"][best], first.history["val_loss"][best])
    assert 0.3 < first.val_accuracy <= 1.0  # 300 real images, 2 epochs: well above chance (0.1)


def test_a_grouped_run_equals_separate_runs_with_the_same_seed(small_mnist: data.TrainVal) -> None:
    """One stacked model (grouped convolution, batched dense layers, per-member Adam) trains each member as if alone,
    members with fewer epochs leaving the group early."""
    configs = [Config(**{**vars(BASE), "learning_rate": 0.01, "dropout": 0.3, "epochs": 2}),
               Config(**{**vars(BASE), "epochs": 1}),
               Config(**{**vars(BASE), "learning_rate": 0.003, "l1": 1e-4, "l2": 1e-3, "epochs": 3})]
    grouped = fasttrain.train_group(configs, small_mnist, seed=5)
    for config, together in zip(configs, grouped):
        alone = fasttrain.train(config, small_mnist, seed=5)
        assert together.config == config
        for name, values in alone.history.items():
            assert len(together.history[name]) == config.epochs
            np.testing.assert_allclose(together.history[name], values, atol=2e-3, err_msg=name)
    with pytest.raises(FastTrainError, match=r"^train_group needs configurations with one \(filters, kernel_size, "):
        fasttrain.train_group([BASE, Config(**{**vars(BASE), "batch_size": 64})], small_mnist, seed=0)


def test_train_many_with_two_worker_processes_equals_one_worker(small_mnist: data.TrainVal) -> None:
    configs = [Config(**{**vars(BASE), "learning_rate": lr, "dropout": d}) for lr in (0.001, 0.01) for d in (0.0, 0.3)]
    configs.append(Config(**{**vars(BASE), "learning_rate": 0.1 + 0.2 - 0.29}))  # the key of 0.01: trained once
    told: list[fasttrain.Outcome] = []
    two = fasttrain.train_many(configs, small_mnist, seed=0, workers=2, device="cpu", on_outcome=told.append)
    one = fasttrain.train_many(configs, small_mnist, seed=0, workers=1, device="cpu")
    # each distinct configuration is told once, as it ends (grader verify caches it then)
    assert sorted(o.config.key() for o in told) == sorted({c.key() for c in configs})
    assert [o.config for o in two] == configs
    assert [(o.val_accuracy, o.val_loss, o.history) for o in two] == [(o.val_accuracy, o.val_loss, o.history)
                                                                       for o in one]
    assert two[-1].history == two[2].history
    grouped = fasttrain.train_many(configs, small_mnist, seed=0, workers=1, device="cpu", grouped=True)
    for a, b in zip(grouped, one):
        np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], atol=2e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_many_on_a_missing_gpu_says_so_in_one_line(small_mnist: data.TrainVal) -> None:
    with pytest.raises(FastTrainError, match=r"^fast trainer: device "
                                             r"'cuda' asked for, but this torch \(.*\) sees no CUDA GPU$"):
        fasttrain.train_many([BASE], small_mnist, seed=0, device="cuda")


@pytest.mark.slow
def test_the_twin_agrees_with_keras_within_one_and_a_half_points_on_real_mnist(quick_mnist: data.TrainVal) -> None:
    """The quick split, two configurations, 2 epochs, 3 seeds each (one seed's noise is 1-2 points per run, for Keras
    as for the twin: compared seed for seed, the two would differ by that much without any bias)."""
    configs = [Config(**{**vars(BASE), "learning_rate": 0.01, "epochs": 2}),
               Config(**{**vars(BASE), "learning_rate": 0.003, "batch_size": 64, "dropout": 0.3, "epochs": 2})]
    seeds = (0, 1, 2)
    for config in configs:
        keras_accs = []
        for seed in seeds:
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)
            history = keras_model(config).fit(quick_mnist.x_train, quick_mnist.y_train, batch_size=config.batch_size,
                                              epochs=config.epochs, verbose=0,
                                              validation_data=(quick_mnist.x_val, quick_mnist.y_val))
            keras_accs.append(max(history.history["val_accuracy"]))
        twin_accs = [fasttrain.train(config, quick_mnist, seed=seed).val_accuracy for seed in seeds]
        gap = 100 * abs(statistics.mean(keras_accs) - statistics.mean(twin_accs))
        assert gap <= 1.5, (config, keras_accs, twin_accs)
