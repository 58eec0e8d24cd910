"""Self-checks for tuning.py: one or more per TODO, and a short quick-profile run (about a minute on a laptop CPU).

Each failure says what to do. A function you have not written yet fails its checks with
its name and its TODO (the NotImplementedError it still raises).
"""

import contextlib
import os
import re
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest
import yaml

import tuning

REPO = Path(tuning.__file__).resolve().parent
REQUIRED_GRID = ("learning_rate", "batch_size", "filters", "dropout")
ANSWER_KEYS = ("most_important_hyperparameter", "hyperparameter_ranking", "better_search", "best_val_accuracy",
               "search_seconds", "search_comparison", "learning_rate_effect", "batch_size_effect")
# In the traceback text KerasTuner keeps of an error raised inside a trial: the stub's TODO, and the frames before it.
TODO_LINE = re.compile(r"NotImplementedError: (TODO\(student\)[^\n]*)")
FRAME = re.compile(r", in (\w+)\n")


@contextlib.contextmanager
def your_code():
    """Run code of tuning.py; a function still raising NotImplementedError fails the check with its name and TODO."""
    try:
        yield
        return
    except NotImplementedError as exc:
        frame = exc.__traceback__
        while frame.tb_next is not None:
            frame = frame.tb_next
        todo = f"{frame.tb_frame.f_code.co_qualname} is not written yet: NotImplementedError: {exc}"
    except Exception as exc:  # KerasTuner turns an error inside its trials into a RuntimeError quoting it
        text = str(exc)
        found = TODO_LINE.search(text)
        if found is None:
            raise
        frames = FRAME.findall(text[: found.start()])  # the last frame before the TODO is the stub's
        todo = f"{frames[-1] if frames else 'tuning.py'} is not written yet: NotImplementedError: {found[1]}"
    raise pytest.fail.Exception(todo, pytrace=False) from None  # the failure shows this line alone


def fixed(**values):
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def build(**values):
    with your_code():
        return tuning.build_model(fixed(**values))


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def penalties_of(layer):
    """The (l1, l2) factors of a layer's kernel regularizer ((0.0, 0.0) without one)."""
    regularizer = getattr(layer, "kernel_regularizer", None)
    config = {} if regularizer is None else regularizer.get_config()
    return float(config.get("l1", 0.0)), float(config.get("l2", 0.0))


# ---- build_model -----------------------------------------------------------------------------------------------------
def test_build_model_uses_filters_kernel_size_dropout_and_learning_rate_from_hp():
    model = build(filters=8, kernel_size=5, dropout=0.4, l2=0.0, learning_rate=0.005)
    convs = layers_of(model, keras.layers.Conv2D)
    assert convs, "build_model: the CNN has no Conv2D layer"
    assert convs[0].filters == 8, "build_model: the first Conv2D layer takes its number of filters from hp 'filters'"
    assert all(conv.kernel_size == (5, 5) for conv in convs), "build_model: every Conv2D takes hp 'kernel_size'"
    rates = [layer.rate for layer in layers_of(model, keras.layers.Dropout)]
    assert 0.4 in rates, "build_model: a Dropout layer takes its rate from hp 'dropout'"
    assert model.optimizer is not None, "build_model: compile the model (Adam with hp 'learning_rate')"
    learning_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert learning_rate == pytest.approx(0.005), "build_model: the optimizer's learning rate is hp 'learning_rate'"
    assert model.output_shape == (None, 10), "build_model: the model ends with a 10-way softmax"


def test_build_model_has_two_conv_blocks_the_second_with_twice_the_filters():
    model = build(filters=8, kernel_size=3, dropout=0.0, l2=0.0, learning_rate=0.001)
    convs, pools = layers_of(model, keras.layers.Conv2D), layers_of(model, keras.layers.MaxPooling2D)
    assert len(convs) == 2 and len(pools) == 2, (
        f"build_model: two Conv2D + MaxPooling2D blocks "
        f"(found {len(convs)} Conv2D and {len(pools)} MaxPooling2D layers)")
    order = [model.layers.index(layer) for layer in (convs[0], pools[0], convs[1], pools[1])]
    assert order == sorted(order), "build_model: each Conv2D is followed by its MaxPooling2D (conv, pool, conv, pool)"
    assert convs[1].filters == 16, (
        f"build_model: the second Conv2D has twice hp 'filters' (16 for filters=8, found {convs[1].filters})")


REGULARIZERS = {  # (hp 'l1', hp 'l2'): the kernel regularizer asked for
    (0.0, 0.01): "keras.regularizers.L2(hp 'l2')",
    (0.01, 0.0): "keras.regularizers.L1(hp 'l1')",
    (0.001, 0.01): "keras.regularizers.L1L2(l1=hp 'l1', l2=hp 'l2') (elastic net: both are above 0)",
}


def test_build_model_puts_hp_l1_and_l2_on_the_conv_and_dense_kernels():
    for (l1, l2), wanted in REGULARIZERS.items():
        model = build(filters=8, kernel_size=3, dropout=0.0, l1=l1, l2=l2, learning_rate=0.001)
        hidden = layers_of(model, keras.layers.Dense)[:-1]
        assert hidden, "build_model: put a hidden Dense layer before the 10-way output"
        for layer in layers_of(model, keras.layers.Conv2D) + hidden:
            found = penalties_of(layer)
            assert found == (pytest.approx(l1), pytest.approx(l2)), (
                f"build_model: with l1={l1:g} and l2={l2:g}, layer {layer.name} needs kernel_regularizer={wanted} "
                f"(found l1={found[0]:g}, l2={found[1]:g})")
    model = build(filters=8, kernel_size=3, dropout=0.0, l1=0.0, l2=0.0, learning_rate=0.001)
    assert all(penalties_of(layer) == (0.0, 0.0) for layer in layers_of(model, keras.layers.Conv2D)), (
        "build_model: with l1=0 and l2=0 the kernels need no regularizer")


# ---- CNNHyperModel.fit ----------------------------------------------------------------------------------------------
class StepCounter(keras.callbacks.Callback):
    """Counts the training steps of each epoch."""

    def on_train_begin(self, logs=None):
        self.steps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1


def test_fit_trains_with_the_trials_batch_size_and_epochs():
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 40)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    counter = StepCounter()
    with your_code():
        history = tuning.CNNHyperModel((28, 28, 1), 10).fit(
            fixed(batch_size=8, epochs=3), model, x, y, validation_data=(x[:8], y[:8]), callbacks=[counter], verbose=0)
    steps = getattr(counter, "steps", [])
    assert steps, "CNNHyperModel.fit: pass what KerasTuner gives (*args, **kwargs: data, callbacks) on to model.fit"
    assert len(steps) == 3, f"CNNHyperModel.fit: train for hp 'epochs' epochs (3 asked, {len(steps)} trained)"
    assert steps == [5, 5, 5], (
        f"CNNHyperModel.fit: train with hp 'batch_size' (8 asked: 40 images take 5 steps an epoch, not {steps[0]})")
    assert isinstance(history, keras.callbacks.History) and "val_accuracy" in history.history, (
        "CNNHyperModel.fit: return what model.fit returns (KerasTuner reads val_accuracy from it)")


# ---- the search spaces ----------------------------------------------------------------------------------------------
def test_grid_search_space_varies_the_required_hyperparameters():
    with your_code():
        grid = tuning.grid_search_space("quick")
    for name in REQUIRED_GRID:
        assert len(grid.values.get(name, ())) >= 2, f"grid_search_space: try at least 2 values of {name}"
    assert grid.size <= 32, (
        f"grid_search_space: the quick grid has {grid.size} combinations; keep it at 32 or fewer so it runs on a CPU")


def test_random_search_space_samples_the_learning_rate_on_a_log_scale():
    with your_code():
        space = tuning.random_search_space("quick")
    lr = space.ranges.get("learning_rate")
    assert lr is not None, "random_search_space: sample learning_rate"
    assert lr.sampling == "log" and lr.max / lr.min >= 10, (
        "random_search_space: sample learning_rate on a log scale over at least 10x")
    assert space.max_trials >= 5, "random_search_space: give the random search at least 5 trials"


def test_manual_trials_are_three_different_configurations_each_with_a_reason():
    with your_code():
        space = tuning.manual_trials("quick")
    points = space.points()
    assert len(points) >= 3, f"manual_trials: choose at least 3 configurations, not {len(points)}"
    assert len({tuple(sorted(p.items())) for p in points}) == len(points), (
        "manual_trials: make each configuration different from the ones before")
    for number, chosen in enumerate(space.trials, 1):
        assert len(chosen.reason.split()) >= 4, (
            f"manual_trials: give trial {number} a one-line reason of at least 4 words for choosing it")


# ---- answer_questions -----------------------------------------------------------------------------------------------
def trial(search, number, learning_rate, batch_size, val_accuracy, seconds):
    hyperparameters = {"learning_rate": learning_rate, "batch_size": batch_size, "epochs": 1, "filters": 16,
                       "kernel_size": 3, "dropout": 0.0, "l1": 0.0, "l2": 0.0}
    return {"search": search, "trial_id": f"{search}-{number}", "status": "COMPLETED",
            "hyperparameters": hyperparameters, "val_accuracy": val_accuracy, "val_loss": 1.0 - val_accuracy,
            "train_seconds": seconds}


def hand_made_trials(best_random_accuracy):
    """A 2 x 2 grid (2 s a trial) and 4 random trials (3 s each) in which the learning rate decides the accuracy."""
    grid = [trial("grid", i, lr, bs, acc, 2.0) for i, (lr, bs, acc) in
            enumerate([(0.001, 32, 0.96), (0.001, 64, 0.95), (0.1, 32, 0.40), (0.1, 64, 0.42)])]
    random = [trial("random", i, lr, bs, acc, 3.0) for i, (lr, bs, acc) in
              enumerate([(0.002, 32, best_random_accuracy), (0.05, 64, 0.55), (0.0005, 128, 0.88), (0.08, 32, 0.35)])]
    return grid + random


def test_answer_questions_answers_every_question_from_the_trials_given():
    with your_code():
        answers = tuning.answer_questions(hand_made_trials(best_random_accuracy=0.90))
    missing = [key for key in ANSWER_KEYS if key not in answers]
    assert missing == [], f"answer_questions: return an answer (or None) for {', '.join(missing)}"
    assert answers["most_important_hyperparameter"] == "learning_rate", (
        "answer_questions: in these trials the learning rate alone moves validation accuracy from about 0.4 to 0.95, "
        f"so it is the most important hyperparameter, not {answers['most_important_hyperparameter']!r}")
    ranking = list(answers["hyperparameter_ranking"] or [])
    assert ranking[:1] == ["learning_rate"] and sorted(ranking) == ["batch_size", "learning_rate"], (
        f"answer_questions: rank the hyperparameters these trials vary (learning_rate first, then batch_size), "
        f"not {ranking}")
    assert answers["better_search"] == "grid", (
        "answer_questions: the grid's best trial (0.96) beats the random search's (0.90)")
    assert answers["best_val_accuracy"] == {"grid": pytest.approx(0.96, abs=1e-3),
                                            "random": pytest.approx(0.90, abs=1e-3)}, (
        "answer_questions: best_val_accuracy is each search's highest val_accuracy in the trials")
    seconds = {"grid": pytest.approx(8.0, abs=0.01), "random": pytest.approx(12.0, abs=0.01)}
    assert answers["search_seconds"] == seconds, (
        "answer_questions: search_seconds is the sum of each search's train_seconds")
    with your_code():
        flipped = tuning.answer_questions(hand_made_trials(best_random_accuracy=0.98))
    assert flipped["better_search"] == "random" and flipped["best_val_accuracy"]["random"] == pytest.approx(0.98), (
        "answer_questions: compute the answers from the trials you are given (a random trial at 0.98 makes random "
        "the better search)")


# ---- a short run of the whole script --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Your tuning.run on the quick profile (about a minute on a laptop CPU); its output dir and trials."""
    from tunekit.config import RunConfig

    out = tmp_path_factory.mktemp("outputs")
    os.environ.setdefault("MPLCONFIGDIR", str(out.parent / "mpl"))
    previous = Path.cwd()
    os.chdir(REPO)  # answers.yaml is read from the repo root
    try:
        with your_code():
            trials = tuning.run(RunConfig(out=out, profile="quick", seed=0))
    finally:
        os.chdir(previous)
    return out, trials


def test_a_short_run_writes_every_file_the_grader_reads(tiny_run):
    from grader.validate import validate_output_dir

    out, trials = tiny_run
    assert trials, "tuning.run returned no trials"
    problems = [str(v) for v in validate_output_dir(out).violations]
    assert problems == [], "\n".join(problems)


def test_answers_are_complete(tiny_run):
    out, _ = tiny_run
    answers = yaml.safe_load((out / "answers.yaml").read_text())
    missing = [k for k in ANSWER_KEYS if answers.get(k) in (None, "", [], {})]
    assert missing == [], f"answer these questions (in answers.yaml or tuning.answer_questions): {', '.join(missing)}"
    assert answers["better_search"] in ("grid", "random")
    for key in ("search_comparison", "learning_rate_effect", "batch_size_effect"):
        assert len(str(answers[key]).split()) >= 15, f"{key}: write at least 15 words, with numbers from your trials"
