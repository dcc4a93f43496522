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


def test_the_latency_benchmark_times_both_backends(trained, tmp_path):
    bench("--out", str(tmp_path), "latency", "--run-dir", str(trained), "--repeats", "2", "--startups", "1")
    latency = json.loads((tmp_path / "latency.json").read_text())
    assert set(latency["backends"]) == {"jax", "onnx"}
    for row in latency["backends"].values():
        assert row["startup_s"] > 0 and row["detect_peak_rss_MB"] > 0
        assert set(row["frame"]) == set(row["scene_pass"]) == set(latency["gflop_per_frame"]) == {"1", "4", "16"}
        assert all(0 < p["p50_ms"] <= p["p95_ms"] for p in row["frame"].values())
        assert all(0 < p["fraction_of_peak_fp32"] for p in row["scene_pass"].values())
    flops = latency["gflop_per_frame"]
    assert flops["1"] < flops["4"] < flops["16"]  # the backbone once, the decoder per object
