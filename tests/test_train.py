import json
import os
import shutil

import numpy as np
import pytest

import train
from data import EpisodeLoader, Split
from models import embedding_model, load_config, save_config, scene_model
from test_models import TINY_MODEL


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("config") / "model_config.json")
    save_config(path, TINY_MODEL)
    return path


def run(tiny_data, run_dir, model_config, *extra):
    train.main(["--data-dir", tiny_data, "--run-dir", str(run_dir), "--model-config", model_config,
                "--num-objects", "3", "--num-views", "2", "--steps", "4", "--checkpoint-every", "2",
                "--eval-every", "4", "--eval-episodes", "2", "--log-every", "2", "--warmup-steps", "0", *extra])


def weights(run_dir, name="", step=None):
    """All weights of both models saved in a run dir (or one of its checkpoints), as arrays."""
    directory = os.path.join(run_dir, "checkpoints", f"step_{step:07d}") if step else str(run_dir)
    config = load_config(os.path.join(run_dir, "model_config.json"))
    out = []
    for model, file in ((embedding_model(config), "embedding"), (scene_model(config), "scene")):
        model.load_weights(os.path.join(directory, f"{file}.weights.h5"))
        out += [np.asarray(v) for v in model.weights]
    return out


def test_step_lowers_the_loss_on_a_fixed_batch(tiny_data, model_config):
    args = train.parse_args(["--run-dir", "unused", "--model-config", model_config, "--learning-rate", "3e-3",
                             "--schedule", "constant", "--warmup-steps", "0"])
    split = Split(tiny_data, "train")
    _, step = train.build(args, split)
    params, nt_params = train.model_state(step.embedding, step.scene)
    opt_state = step.optimizer.init(params)
    batch = next(EpisodeLoader(split, 3, 2, seed=0, training=True, num_absent=1).batches(2))
    batch = {k: batch[k] for k in train.TRAIN_KEYS}
    losses = []
    for _ in range(12):
        params, nt_params, opt_state, metrics = train.train_step(params, nt_params, opt_state, batch, step)
        losses.append({k: float(v) for k, v in metrics.items()})
    assert losses[-1]["loss"] < 0.9 * losses[0]["loss"]
    assert losses[-1]["contrastive_loss"] < losses[0]["contrastive_loss"]
    assert losses[-1]["scene_loss"] < losses[0]["scene_loss"]
    assert losses[-1]["objectness_loss"] < losses[0]["objectness_loss"]
    assert losses[-1]["box_loss"] < losses[0]["box_loss"]


def test_run_dir_describes_itself_and_resume_matches_a_straight_run(tiny_data, model_config, tmp_path):
    straight = tmp_path / "straight"
    run(tiny_data, straight, model_config)
    options = json.loads((straight / "options.json").read_text())
    assert options["steps"] == 4 and options["seed"] == 0
    assert json.loads((straight / "model_config.json").read_text())["scene_size"] == 128
    lines = [json.loads(line) for line in open(straight / "metrics.jsonl")]
    assert [r["step"] for r in lines if r["split"] == "train"] == [2, 4]
    assert {"average_precision", "roc_auc", "positive_rate", "f1@0.5"} <= set(lines[-1])
    for picture in ("loss.png", "validation.png", "debug/step_0000004.png"):
        assert (straight / picture).stat().st_size > 0

    # as if killed just after the checkpoint at step 2: keep only that one, then resume
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed)
    shutil.rmtree(killed / "checkpoints" / "step_0000004")
    (killed / "checkpoints" / "latest.json").write_text(json.dumps({"name": "step_0000002", "step": 2}))
    for name in ("embedding.weights.h5", "scene.weights.h5"):
        (killed / name).unlink()
    train.main(["--resume", str(killed)])
    for a, b in zip(weights(straight), weights(killed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(weights(straight), weights(straight, step=2)))


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_data, model_config, tmp_path):
    with pytest.raises(SystemExit, match=r"loss is (nan|inf) at step \d+.*last good checkpoint"):
        run(tiny_data, tmp_path / "run", model_config, "--learning-rate", "1e30", "--checkpoint-every", "1",
            "--steps", "50")
    latest = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert latest["step"] < 50
    assert all(np.isfinite(w).all() for w in weights(tmp_path / "run", step=latest["step"]))
    assert not (tmp_path / "run" / "scene.weights.h5").exists()


def test_data_and_model_config_must_agree(tiny_data, model_config, tmp_path):
    with pytest.raises(SystemExit, match=r"has 128x128 scenes but the model config expects 320"):
        train.main(["--data-dir", tiny_data, "--run-dir", str(tmp_path / "r"), "--model-config", "cpu"])
    with pytest.raises(SystemExit, match="has no checkpoint to resume from"):
        os.makedirs(tmp_path / "empty")
        (tmp_path / "empty" / "options.json").write_text(json.dumps(vars(train.parse_args(
            ["--data-dir", tiny_data, "--run-dir", str(tmp_path / "empty"), "--model-config", model_config,
             "--steps", "4", "--warmup-steps", "0"]))))
        train.main(["--resume", str(tmp_path / "empty")])
