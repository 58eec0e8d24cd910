"""Self-checks for tuning.py on the quick profile (CPU, about a minute). Each failure names what to do."""

import keras
import keras_tuner as kt
import pytest
import yaml

import tuning

REQUIRED_GRID = ("learning_rate", "batch_size", "filters", "dropout")
ANSWER_KEYS = ("most_important_hyperparameter", "hyperparameter_ranking", "better_search", "best_val_accuracy",
               "search_seconds", "search_comparison", "learning_rate_effect", "batch_size_effect")


def fixed(**values):
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def test_build_model_uses_filters_kernel_size_dropout_and_learning_rate():
    model = tuning.build_model(fixed(filters=8, kernel_size=5, dropout=0.4, l2=0.0, learning_rate=0.005))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 2, "the baseline CNN has two Conv2D layers"
    assert convs[0].filters == 8, "the first Conv2D layer takes its number of filters from hp 'filters'"
    assert convs[0].kernel_size == (5, 5), "the Conv2D layers take their kernel size from hp 'kernel_size'"
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert 0.4 in rates, "a Dropout layer takes its rate from hp 'dropout'"
    assert model.optimizer is not None, "compile the model (Adam with hp 'learning_rate')"
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.005)
    assert model.output_shape == (None, 10), "the model ends with a 10-way softmax"


def test_grid_search_space_varies_the_required_hyperparameters():
    grid = tuning.grid_search_space("quick")
    for name in REQUIRED_GRID:
        assert len(grid.values.get(name, ())) >= 2, f"the grid must try at least 2 values of {name}"
    assert grid.size <= 32, f"the quick grid has {grid.size} combinations; keep it at 32 or fewer so it runs on a CPU"


def test_random_search_space_samples_the_learning_rate_on_a_log_scale():
    space = tuning.random_search_space("quick")
    lr = space.ranges.get("learning_rate")
    assert lr is not None, "the random search must sample learning_rate"
    assert lr.sampling == "log" and lr.max / lr.min >= 10, "sample learning_rate on a log scale over at least 10x"
    assert space.max_trials >= 5, "give the random search at least 5 trials"


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
