"""Data parallelism: the same global batch on 1, 2 or 4 devices, or over 2 processes, trains to the
same weights. Each run is a subprocess, since JAX fixes its devices when it starts."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import hyperparameters
import train
from conftest import REPO, weights
from data import EpisodeLoader, Split

pytestmark = pytest.mark.slow  # subprocesses that train


def train_command(tiny_data, run_dir, model_config, scenes_per_step, *extra):
    return [sys.executable, os.path.join(REPO, "train.py"), "--data-dir", tiny_data, "--run-dir", str(run_dir),
            "--model-config", model_config, "--num-objects", "3", "--num-views", "2", "--steps", "3",
            "--scenes-per-step", str(scenes_per_step), "--checkpoint-every", "3", "--eval-every", "3",
            "--eval-episodes", "2", "--log-every", "1", "--warmup-steps", "0", "--absent-queries-per-scene", "1",
            # SGD: Adam's first steps are ~lr * sign(gradient), which turns float noise in a
            # near-zero gradient into a full step either way
            "--optimizer", "sgd", "--learning-rate", "0.05",
            # YOLOv3's objectness target: with the IoU target and GIoU coordinates together, float
            # noise between 1 and 4 devices grows to 1% of some weights in 3 steps (docs/training.md)
            "--box-objectness", "one", *extra]


def run_on(devices, command):
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def initial_weights(run_dir):
    """The weights a run started from: its own model config (priors included) and seed, no step taken."""
    models = train.build(hyperparameters.Hyperparameters(model_config=str(run_dir / "model_config.json")))
    return [np.asarray(v) for model in (models.embedding, models.scene) for v in model.weights]


def same_updates(start, a, b):
    """-> per weight array, whether the runs ending at weights a and b moved it the same way from start:
    ||a - b|| within 1% of ||a - start||, plus 1e-6 for arrays that only float noise moves (a bias
    before a batch norm). Summing in another order and three steps through the losses leave up to
    0.2% (2 devices on a 2-core AMD EPYC, 2026-12-03); a mis-averaged gradient leaves its error."""
    return [np.linalg.norm(x - y) <= 1e-2 * np.linalg.norm(x - w) + 1e-6
            for w, x, y in zip(start, a, b, strict=True)]


def assert_same_weights(a, b):
    assert all(same_updates(initial_weights(a), weights(a), weights(b)))


@pytest.fixture(scope="module")
def one_device(tiny_data, model_config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one") / "run"
    done = run_on(1, train_command(tiny_data, run_dir, model_config, 4))
    assert done.returncode == 0, done.stderr
    return run_dir


@pytest.mark.parametrize("devices", [2, 4])
def test_several_devices_train_to_the_same_weights(tiny_data, model_config, one_device, devices, tmp_path):
    done = run_on(devices, train_command(tiny_data, tmp_path / "run", model_config, 4))
    assert done.returncode == 0, done.stderr
    assert_same_weights(one_device, tmp_path / "run")


def test_the_comparison_can_fail(one_device):
    """An update 2% off, as a gradient averaged over the wrong count would give, fails the comparison;
    the same weights pass it."""
    start, trained = initial_weights(one_device), weights(one_device)
    off = [w + 1.02 * (x - w) for w, x in zip(start, trained)]
    assert all(same_updates(start, trained, trained))
    assert not all(same_updates(start, trained, off))


def test_two_processes_train_to_the_same_weights(tiny_data, model_config, one_device, tmp_path):
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processes = [subprocess.Popen(
        train_command(tiny_data, tmp_path / "run", model_config, 4, "--coordinator-address", f"127.0.0.1:{port}",
                      "--num-processes", "2", "--process-id", str(i)),
        env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    assert_same_weights(one_device, tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"train"' in line]) == 3  # written once, by process 0


def test_batch_must_divide_over_the_devices(tiny_data, model_config, tmp_path):
    done = run_on(2, train_command(tiny_data, tmp_path / "run", model_config, 3))
    assert done.returncode != 0
    assert "--scenes-per-step 3 does not divide over the 2 devices" in done.stderr


def test_host_shares_make_up_the_batch(tiny_data):
    split = Split(tiny_data, "train")
    whole = next(EpisodeLoader(split, 3, 2, seed=0, training=True).batches(4))
    parts = [next(EpisodeLoader(split, 3, 2, seed=0, training=True).batches(4, share=(2 * p, 2))) for p in (0, 1)]
    for key, value in whole.items():
        np.testing.assert_array_equal(value, np.concatenate([part[key] for part in parts]))
