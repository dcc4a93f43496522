import os
import sys

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import generate_data  # noqa: E402

# A dataset that renders in about a second: 4 objects x 2 instances on 128x128 scenes.
TINY = dict(train_ids="0-9", validation_ids="10-14", test_ids="15-19", num_train_scenes=6,
            num_validation_scenes=2, num_test_scenes=2, views_per_object=6, scene_size=128, grid_size=16,
            objects_per_scene=4, instances_per_object=2, scenes_per_chunk=4, objects_per_chunk=4, workers=1)


def tiny_args(out_dir, **overrides):
    options = {**TINY, **overrides}
    return ["--out-dir", str(out_dir)] + [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def generate(out_dir, **overrides):
    generate_data.main(tiny_args(out_dir, **overrides))
    return str(out_dir)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated once per session; tests must not modify it (copy it first)."""
    return generate(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def trained(tiny_data, tmp_path_factory):
    """A run dir (with a box head) after a few real train steps on the tiny data; do not modify it."""
    from models import save_config
    from test_models import TINY_MODEL
    from test_train import run

    root = tmp_path_factory.mktemp("trained")
    save_config(str(root / "model_config.json"), TINY_MODEL)
    run(tiny_data, root / "run", str(root / "model_config.json"))
    return root / "run"
