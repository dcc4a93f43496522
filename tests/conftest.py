"""Shared fixtures and helpers. Two tiers: `pytest -m "not slow"` runs the pure functions, the
models and one real train step on synthetic arrays in seconds, without pybullet; the tests that
render data (any that use the tiny_data, trained or renderer fixtures, marked slow here
automatically) or start subprocesses (marked by hand) make up the rest. CI runs both."""

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from models import (ModelConfig, embedding_model, enable_compilation_cache, load_config, save_config,  # noqa: E402
                    scene_model)

enable_compilation_cache()  # as every entry point does: a rerun of the suite reuses the compiled steps

# A dataset that renders in about a second: 4 objects x 2 instances on 128x128 scenes.
TINY = dict(train_ids="0-9", validation_ids="10-14", test_ids="15-19", num_train_scenes=6,
            num_validation_scenes=2, num_test_scenes=2, views_per_object=6, scene_size=128, grid_size=16,
            objects_per_scene=4, instances_per_object=2, scenes_per_chunk=4, objects_per_chunk=4, workers=1,
            test_everyday_ids="15-18,1000-1001")
# A model for those scenes that trains a step in well under a second.
TINY_MODEL = ModelConfig(obj_filters=(4, 4, 4, 8), embedding_dim=8, scene_size=128, scene_filters=(4, 4, 4, 8, 8, 8),
                         classifier_filters=(8, 4))
SLOW_FIXTURES = {"tiny_data", "trained", "renderer"}  # they render with pybullet


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


def tiny_args(out_dir, **overrides):
    options = {**TINY, **overrides}
    return ["--out-dir", str(out_dir)] + [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def generate(out_dir, **overrides):
    import generate_data

    generate_data.main(tiny_args(out_dir, **overrides))
    return str(out_dir)


def train_run(data_dir, run_dir, model_config, *extra):
    """Four real train steps of the tiny model on the tiny data (checkpoints at 2 and 4)."""
    import train

    train.main(["--data-dir", data_dir, "--run-dir", str(run_dir), "--model-config", model_config,
                "--num-objects", "3", "--num-views", "2", "--steps", "4", "--checkpoint-every", "2",
                "--eval-every", "4", "--eval-episodes", "2", "--log-every", "2", "--warmup-steps", "0", *extra])


def weights(run_dir, step=None):
    """All weights of both models saved in a run dir (or one of its checkpoints), as arrays."""
    directory = os.path.join(run_dir, "checkpoints", f"step_{step:07d}") if step else str(run_dir)
    config = load_config(os.path.join(run_dir, "model_config.json"))
    out = []
    for model, file in ((embedding_model(config), "embedding"), (scene_model(config), "scene")):
        model.load_weights(os.path.join(directory, f"{file}.weights.h5"))
        out += [np.asarray(v) for v in model.weights]
    return out


@pytest.fixture(scope="session")
def model_config(tmp_path_factory):
    """TINY_MODEL's model_config.json, for --model-config."""
    path = str(tmp_path_factory.mktemp("config") / "model_config.json")
    save_config(path, TINY_MODEL)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated once per session; tests must not modify it (copy it first)."""
    return generate(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def trained(tiny_data, model_config, tmp_path_factory):
    """A run dir (with a box head) after a few real train steps on the tiny data; do not modify it."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train_run(tiny_data, run_dir, model_config)
    return run_dir
