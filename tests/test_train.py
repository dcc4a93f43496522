import dataclasses
import json
import os
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import hyperparameters
import runs
import test as yolz_test
import train
from conftest import REPO, train_run, weights
from hyperparameters import Hyperparameters


def test_run_dir_describes_itself_and_resume_matches_a_straight_run(tiny_data, model_config, tmp_path):
    straight = tmp_path / "straight"
    train_run(tiny_data, straight, model_config)
    options = json.loads((straight / "options.json").read_text())
    assert options["steps"] == 4 and options["seed"] == 0
    assert json.loads((straight / "model_config.json").read_text())["scene_size"] == 128
    lines = [json.loads(line) for line in open(straight / "metrics.jsonl")]
    assert [r["step"] for r in lines if r["split"] == "train"] == [2, 4]
    assert {"average_precision", "roc_auc", "positive_rate", "f1@0.5"} <= set(lines[-1])
    for picture in ("loss.png", "validation.png", "debug/step_0000004.png", "episode.png"):
        assert (straight / picture).stat().st_size > 0

    # as if killed just after the checkpoint at step 2: keep only that one, then resume
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed)
    shutil.rmtree(killed / "checkpoints" / "step_0000004")
    (killed / "checkpoints" / "latest.json").write_text(json.dumps({"name": "step_0000002", "step": 2}))
    for name in ("embedding.weights.h5", "scene.weights.h5"):
        (killed / name).unlink()
    os.makedirs(killed / "checkpoints" / ".step_0000004.tmp-999999999")  # what a killed checkpoint leaves
    with open(killed / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "st')  # a line torn by the kill
    train.main(["--resume", str(killed)])
    for a, b in zip(weights(straight), weights(killed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(weights(straight), weights(straight, step=2)))
    # the rows of the replayed steps 3-4 were dropped, not written twice; no temp litter is left
    lines = [json.loads(line) for line in open(killed / "metrics.jsonl")]
    assert [(r["split"], r["step"]) for r in lines] == [("train", 2), ("train", 4), ("validation", 4)]
    assert sorted(os.listdir(killed / "checkpoints")) == ["latest.json", "step_0000002", "step_0000004"]


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_data, model_config, tmp_path):
    with pytest.raises(SystemExit, match=r"loss is (nan|inf) at step \d+.*last good checkpoint"):
        train_run(tiny_data, tmp_path / "run", model_config, "--learning-rate", "1e30", "--checkpoint-every", "1",
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
        hp = Hyperparameters(model_config=model_config, steps=4, warmup_steps=0)
        options = {**dataclasses.asdict(hp), "data_dir": tiny_data, "run_dir": str(tmp_path / "empty")}
        (tmp_path / "empty" / "options.json").write_text(json.dumps(options))
        train.main(["--resume", str(tmp_path / "empty")])


def test_options_json_holds_every_hyperparameter_and_resume_reads_them_back(trained):
    options = json.loads((trained / "options.json").read_text())
    hp = Hyperparameters.from_options(options)
    assert {f.name for f in dataclasses.fields(hp)} <= set(options)
    assert hp.steps == 4 and hp.num_views == 2 and hp.num_objects == 3  # as train_run asked
    resumed, launch = hyperparameters.parse_args(["--resume", str(trained)])
    assert resumed == hp and launch.run_dir == str(trained) and launch.data_dir == options["data_dir"]
    # a run from before today's defaults of these flags resumes as it was trained, not with them
    newer = ("matching", "crop_references", "box_head_convs", "box_coordinates", "box_objectness")
    older = Hyperparameters.from_options({k: v for k, v in options.items() if k not in newer})
    assert [getattr(older, k) for k in newer] == ["add", 0.0, 0, "yolo", "one"]
    assert [getattr(hp, k) for k in newer] == ["film", 0.5, 2, "giou", "iou"]
    assert options["config"] is None and json.loads((trained / "inference.json").read_text()) == {
        "box_score": "geometric", "presence_power": 0.0, "operating_points": []}


def script_defaults(script):
    """{VARIABLE: value} of a shell script's `: "${VARIABLE:=value}"` lines."""
    text = open(os.path.join(REPO, script)).read()
    return dict(re.findall(r'^: "\$\{(\w+):=([^}]*)\}"', text, flags=re.M))


def test_v3_tests_defaults_are_test_pys():
    """Users edit the variables at the top of v3_test.sh; each must say what the Python default is."""
    flags = {a.dest: a for a in yolz_test.make_parser()._actions}
    checked = 0
    for name, value in script_defaults("v3_test.sh").items():
        action = flags.get(name.lower())
        if action is None or action.default is None:
            continue  # not a flag
        converted = (action.type or str)(value) if value else value
        assert converted == action.default, f"v3_test.sh: {name}={value} but the flag's default is {action.default}"
        checked += 1
    assert checked >= 4


def test_v3_train_sh_runs_the_demo_recipe_as_train_py_config_demo_does(tmp_path):
    """sh v3_train.sh (its command echoed by a stand-in python) parses to the options python train.py
    --config demo gives, apart from the paths; its variables reach the command line."""
    def script_args(**env):
        out = subprocess.run(["sh", os.path.join(REPO, "v3_train.sh")], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHON": "echo", **env}).stdout
        return out.split()[1:]  # after train.py

    hp, launch = hyperparameters.parse_args(script_args())
    demo, demo_launch = hyperparameters.parse_args(["--config", "demo", "--run-dir", "runs/x"])
    assert hp == demo and launch.config == demo_launch.config == "demo" and launch.data_dir == demo_launch.data_dir
    hp, launch = hyperparameters.parse_args(script_args(CONFIG="pretrained", STEPS="700", SEED="3", RUN_DIR="r",
                                                        FLAGS="--num-views 2 --learning-rate 0.01"))
    assert (hp.steps, hp.seed, hp.num_views, hp.learning_rate, hp.eval_every, launch.run_dir) == \
        (700, 3, 2, 0.01, 2000, "r")


def test_every_recipe_loads_and_a_bad_one_is_one_line_naming_it(tmp_path):
    for name in hyperparameters.recipes():
        overrides, _ = hyperparameters.load_recipe(name)
        hp, launch = hyperparameters.parse_args(["--config", name, "--run-dir", "r"])
        assert all(getattr(hp, k) == v for k, v in overrides.items()) and launch.config == name
    hp, _ = hyperparameters.parse_args(["--config", "pretrained", "--run-dir", "r", "--steps", "500"])  # flags win
    assert (hp.steps, hp.eval_every) == (500, 2000)
    assert hyperparameters.load_recipe("pretrained")[1] == {"presence_power": 4.0}
    cases = [("OVERRIDES = {'steps': 0}", "steps = 0 is not what --steps takes"),
             ("OVERRIDES = {'stepz': 1}", "stepz = 1 is not a hyperparameter"),
             ("OVERRIDES = {'stop_scene_gradient': 1}", "is not what --stop-scene-gradient takes"),
             ("OVERRIDES = {}\nINFERENCE = {'threshold': 0.5}", "INFERENCE sets box_score, presence_power only"),
             ("OVERRIDES = {}\nINFERENCE = {'presence_power': -1}", "INFERENCE's presence_power=-1: give 0 or more"),
             ("1 / 0", "does not run: division by zero"), ("X = 1", "a recipe sets OVERRIDES")]
    path = tmp_path / "mine.py"
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(hyperparameters.DataError, match=f"{path}.*{re.escape(message)}"):
            hyperparameters.load_recipe(str(path))
    with pytest.raises(SystemExit, match="--config nothing: no such recipe"):
        train.main(["--config", "nothing", "--run-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def snapshot(run_dir):
    """{relative path: bytes} of every file in a run dir."""
    out = {}
    for root, _, files in os.walk(run_dir):
        for name in files:
            out[os.path.relpath(os.path.join(root, name), run_dir)] = open(os.path.join(root, name), "rb").read()
    return out


def test_a_run_dir_that_holds_a_run_is_refused_before_anything_is_written(tiny_data, model_config, trained, tmp_path):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    (run_dir / "notes.txt").write_text("mine")
    # test.py's output dirs, and one that is not ("testing")
    for name in ("test_shift_pyramid2_auto", "test_crops_pyramid1.4_pyramid2_flips", "testing"):
        (run_dir / name).mkdir()
        (run_dir / name / "metrics.json").write_text("{}")
    before = snapshot(run_dir)
    with pytest.raises(SystemExit, match=r"holds a run .*--resume .*--overwrite"):
        train_run(tiny_data, run_dir, model_config)
    # a failing call with --overwrite (too many objects) also writes nothing
    with pytest.raises(SystemExit, match="fewer than the 99 objects"):
        train_run(tiny_data, run_dir, model_config, "--overwrite", "--num-objects", "99")
    assert snapshot(run_dir) == before
    train_run(tiny_data, run_dir, model_config, "--overwrite", "--seed", "1")
    assert json.loads((run_dir / "options.json").read_text())["seed"] == 1
    assert (run_dir / "notes.txt").read_text() == "mine"  # --overwrite removes only what yolz writes
    assert (run_dir / "testing" / "metrics.json").exists()
    assert not any((run_dir / n).exists() for n in ("test_shift_pyramid2_auto", "test_crops_pyramid1.4_pyramid2_flips"))
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["latest.json", "step_0000002", "step_0000004"]


def test_a_locked_run_dir_is_refused_and_a_dead_holders_lock_taken_over(tiny_data, model_config, tmp_path, capsys):
    from runs import RunDirLock

    os.makedirs(tmp_path / "run")
    with RunDirLock(str(tmp_path / "run")):
        with pytest.raises(SystemExit, match=rf"in use by process {os.getpid()}"):
            train_run(tiny_data, tmp_path / "run", model_config)
    assert not (tmp_path / "run" / "options.json").exists()
    (tmp_path / "run" / ".lock").write_text("999999999")  # a killed training's
    train_run(tiny_data, tmp_path / "run", model_config)
    assert "taking over the lock" in capsys.readouterr().out
    assert (tmp_path / "run" / "scene.weights.h5").exists()


def test_resume_takes_the_runs_options_and_may_only_raise_steps(tiny_data, trained, tmp_path, capsys):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    refused = (["--num-views", "3", "--learning-rate", "0.1"], "--learning-rate, --num-views cannot change")
    for argv, message in (refused, (["--steps", "3"], "may only raise it")):
        with pytest.raises(SystemExit):
            train.main(["--resume", str(run_dir), *argv])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--resume", str(tmp_path / "nowhere")])
    assert "no such run dir" in capsys.readouterr().err
    train.main(["--resume", str(run_dir), "--steps", "6"])
    assert json.loads((run_dir / "options.json").read_text())["steps"] == 6
    lines = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert [r["step"] for r in lines if r["split"] == "train"] == [2, 4, 6]


@pytest.mark.parametrize("flag, value", [("--steps", "0"), ("--num-objects", "0"), ("--num-views", "0"),
                                         ("--scenes-per-step", "0"), ("--checkpoint-every", "0"),
                                         ("--log-every", "0"), ("--eval-every", "0"), ("--eval-episodes", "0"),
                                         ("--seed", "-1"), ("--learning-rate", "-0.1"), ("--learning-rate", "nan"),
                                         ("--focal-alpha", "2")])
def test_bad_flags_are_one_line_errors(flag, value, capsys):
    with pytest.raises(SystemExit) as error:
        hyperparameters.parse_args(["--run-dir", "unused", flag, value])
    assert error.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def test_broken_run_files_are_clear_errors(tiny_data, trained, tmp_path):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    (run_dir / "model_config.json").write_text(json.dumps({"scene_size": 128, "colour": "red"}))
    with pytest.raises(SystemExit, match=r"model_config.json is not a model config \(unknown keys: colour\)"):
        yolz_test.main(["--run-dir", str(run_dir), "--data-dir", tiny_data])
    (run_dir / "options.json").write_text('{"steps": 4, "se')  # truncated
    with pytest.raises(SystemExit, match="options.json is not valid JSON"):
        train.main(["--resume", str(run_dir)])
    os.makedirs(tmp_path / "empty")
    with pytest.raises(SystemExit, match="empty/options.json is missing"):
        train.main(["--resume", str(tmp_path / "empty")])


def test_disk_full_while_checkpointing_is_one_line_and_leaves_no_half_checkpoint(tiny_data, model_config, tmp_path,
                                                                                 monkeypatch):
    saves = []

    def savez(path, *arrays):  # the second checkpoint finds the disk full
        saves.append(path)
        if len(saves) == 2:
            raise OSError(28, "No space left on device", path)
        return real_savez(path, *arrays)

    real_savez = np.savez
    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(SystemExit, match=r"No space left on device; the last checkpoint is step 2 in .*: free some "
                       r"space, then python train.py --resume .*run carries on from it$"):
        train_run(tiny_data, tmp_path / "run", model_config)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["latest.json", "step_0000002"]  # no temp dir left
    assert json.loads((checkpoints / "latest.json").read_text())["step"] == 2
    monkeypatch.setattr(np, "savez", real_savez)
    train.main(["--resume", str(tmp_path / "run")])  # the command the message gives carries on
    assert json.loads((checkpoints / "latest.json").read_text())["step"] == 4
    # h5py's own error at the first checkpoint: its many-line message cut to one, and no checkpoint to resume
    monkeypatch.setattr(runs, "save_weights", lambda *_: (_ for _ in ()).throw(
        OSError(28, "Can't synchronously write data (file write failed:\n, errno = 28, ...)")))
    with pytest.raises(SystemExit) as error:
        train_run(tiny_data, tmp_path / "other", model_config)
    assert str(error.value.code) == ("error: No space left on device, before the run's first checkpoint: free some "
                                     "space, then run the same command with --overwrite to start it again")


def test_ctrl_c_is_one_line_with_the_command_that_carries_on(tiny_data, model_config, tmp_path, monkeypatch):
    steps = []
    real_step = train.train_step

    def step(*args, **kwargs):  # Ctrl-C during the third step
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", step)
    with pytest.raises(SystemExit, match=r"^interrupted; the last checkpoint is step 2 in .*: python train.py "
                       r"--resume .*run carries on from it$"):
        train_run(tiny_data, tmp_path / "run", model_config)


def test_overwrite_needs_a_run_of_yolzs_not_a_name(tiny_data, model_config, trained, tmp_path):
    """Entries named like a run's (train/, test/, debug/) prove nothing: a data dir has train/ and
    test/. Only a run's options.json does; in a run, only test.py's output dirs are replaced."""
    photos = tmp_path / "photos"
    for name in ("train", "test", "debug"):
        os.makedirs(photos / name)
        (photos / name / "cat1.jpg").write_text("a user's")
    for extra in ((), ("--overwrite",)):
        with pytest.raises(SystemExit, match="holds debug, test, train but no run of train.py's"):
            train_run(tiny_data, photos, model_config, *extra)
    assert all((photos / n / "cat1.jpg").read_text() == "a user's" for n in ("train", "test", "debug"))
    data = shutil.copytree(tiny_data, tmp_path / "data")  # --data-dir = --run-dir: the splits stay
    before = snapshot(data)
    with pytest.raises(SystemExit, match="no run of train.py's"):
        train_run(str(data), data, model_config, "--overwrite")
    assert snapshot(data) == before
    run_dir = shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns("test"))
    os.makedirs(run_dir / "test")
    (run_dir / "test" / "metrics.json").write_text("{}")
    (run_dir / "test" / "notes.md").write_text("mine")
    with pytest.raises(SystemExit, match=r"test/ holds notes.md, which test.py did not write"):
        train_run(tiny_data, run_dir, model_config, "--overwrite")
    assert (run_dir / "test" / "notes.md").read_text() == "mine"


@pytest.mark.parametrize("key, value, message", [
    ("learning_rate", "0.1", 'learning_rate "0.1" is not what --learning-rate takes'),
    ("optimizer", "rmsprop", 'optimizer "rmsprop" is not what --optimizer takes'),
    ("num_views", 2.5, "num_views 2.5 is not"), ("seed", None, "seed null is not"),
    ("num_objects", 0, "num_objects 0 is not"), ("stop_scene_gradient", 1, "stop_scene_gradient 1 is not"),
    ("colour", "red", "'colour' is no option of train.py's")])
def test_resume_checks_a_hand_edited_options_json_as_the_flags(trained, tmp_path, key, value, message):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    options = json.loads((run_dir / "options.json").read_text())
    (run_dir / "options.json").write_text(json.dumps({**options, key: value}))
    with pytest.raises(SystemExit) as error:
        train.main(["--resume", str(run_dir)])
    assert message in str(error.value.code) and "options.json" in str(error.value.code)
    assert "\n" not in str(error.value.code)


def test_resume_with_a_model_config_that_does_not_fit_is_one_line(tiny_data, trained, tmp_path):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    config = json.loads((run_dir / "model_config.json").read_text())
    (run_dir / "model_config.json").write_text(json.dumps({**config, "embedding_dim": "big"}))
    for command in (lambda: train.main(["--resume", str(run_dir)]),
                    lambda: yolz_test.main(["--run-dir", str(run_dir), "--data-dir", tiny_data])):
        with pytest.raises(SystemExit, match=r'model_config.json: embedding_dim "big" is not a value the model takes'):
            command()
    (run_dir / "model_config.json").write_text(json.dumps({**config, "embedding_dim": 16}))  # weights have 8
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit, match=r"step_0000004/embedding.weights.h5 does not fit the run's model_config"):
            train.main(["--resume", str(run_dir), "--steps", "6"])
    assert not [w for w in said if "saving_lib" in w.filename], "Keras' warnings before the one line"


def test_abbreviated_flags_do_not_slip_past_resume(trained, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--resume", str(trained), "--learn=0.5"])
    assert "--learning-rate cannot change" in capsys.readouterr().err


def tensorboard_events(run_dir):
    """{tag: {step: value}} of the scalars and {tag: [steps]} of the images in RUN_DIR/tensorboard,
    read straight from the TFRecord files (length, crc, event proto, crc) with tensorboardX's protos."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars, images = {}, {}
    folder = os.path.join(run_dir, "tensorboard")
    for name in sorted(os.listdir(folder)):
        data = open(os.path.join(folder, name), "rb").read()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("image"):
                    images.setdefault(value.tag, []).append(event.step)
                else:
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars, images


def test_tensorboard_logs_what_metrics_jsonl_and_debug_get(tiny_data, model_config, tmp_path):
    pytest.importorskip("tensorboardX", reason="optional: pip install -r requirements-tracking.txt")
    run_dir = tmp_path / "run"
    train_run(tiny_data, run_dir, model_config, "--tensorboard")
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    scalars, images = tensorboard_events(run_dir)
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and np.isfinite(value):  # (precision with nothing predicted is NaN)
                tag = f"{row['split']}/{key.replace('@', '_at_')}"
                assert scalars[tag][row["step"]] == pytest.approx(value, rel=1e-6)
    assert set(scalars["train/loss"]) == {2, 4} and set(scalars["validation/average_precision"]) == {4}
    assert images == {"episode": [0], "debug": [4]}
    assert json.loads((run_dir / "options.json").read_text())["tensorboard"] is True


def test_tensorboard_without_its_package_is_one_line_before_anything_is_written(tiny_data, model_config, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorboardX", None)  # as if not installed
    with pytest.raises(SystemExit, match="--tensorboard needs tensorboardX: .*requirements-tracking.txt"):
        train_run(tiny_data, tmp_path / "run", model_config, "--tensorboard")
    assert not (tmp_path / "run").exists()
