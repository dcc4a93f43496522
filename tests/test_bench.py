"""bench.py's train and inference benchmarks run end to end (a few steps, the tiny run) and write
their JSON: the figures are a benchmark's business, a benchmark that no longer runs is not."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # subprocesses, each importing JAX


def bench(*args):
    subprocess.run([sys.executable, "bench.py", *args], cwd=REPO, check=True, capture_output=True, text=True,
                   env={**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})


def test_train_and_inference_benchmarks_write_their_figures(trained, tmp_path):
    bench("--out", str(tmp_path), "train", "--model-config", "cpu", "--steps", "2")
    [train] = [json.loads(p.read_text()) for p in tmp_path.glob("train_*.json")]
    assert train["model_config"] == "cpu" and train["s_per_step"] > 0 and train["gflop_per_step"] > 0
    bench("--out", str(tmp_path), "inference", "--run-dir", str(trained), "--num-objects", "2", "--repeats", "1")
    inference = json.loads((tmp_path / "inference.json").read_text())
    assert inference["C"] == 2 and inference["shared_scene_pass_queries_per_s"] > 0
