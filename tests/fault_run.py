"""A scripted fault run: kill -9 (the whole process group) at random moments during data
generation, training and testing, rerun until each finishes, and compare with uninterrupted
runs. Slow, so not part of pytest:

    .venv/bin/python tests/fault_run.py [--kills 4] [--seed 0]      # ~3-5 min on 2 cores

Prints per stage the kills made and whether the result matches; exits 1 if one does not, or if
anything with a temp name (.tmp-, .old-) is left behind.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

from conftest import TINY_MODEL, tiny_args, weights  # noqa: E402
from models import save_config  # noqa: E402

PYTHON = sys.executable


def run_with_kills(command, kills, rng, max_delay):
    """Runs command() (a fresh argv each time), killing it after a random delay, `kills` times
    unless it finishes first, then lets it finish -> the number of kills made."""
    made = 0
    while True:
        process = subprocess.Popen(command(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            _, err = process.communicate(timeout=rng.uniform(0.3, max_delay) if made < kills else None)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            made += 1
            continue
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command())} failed:\n{err[-3000:]}")
        return made


def tree_bytes(root):
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


def litter(root):
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if ".tmp-" in n or ".old-" in n]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=4, help="kill -9s per stage")
    parser.add_argument("--seed", type=int, default=0, help="seeds the moments of the kills")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="yolz_faults_")
    ref, fault = os.path.join(root, "ref"), os.path.join(root, "fault")
    config = os.path.join(root, "model_config.json")
    save_config(config, TINY_MODEL)
    results = []

    # 1. generation
    generate = [PYTHON, "generate_data.py", *tiny_args(os.path.join(ref, "data"), workers=2)]
    run_with_kills(lambda: generate, 0, rng, 0)
    generate_faulty = [PYTHON, "generate_data.py", *tiny_args(os.path.join(fault, "data"), workers=2)]
    kills = run_with_kills(lambda: generate_faulty, args.kills, rng, 2.5)
    same = tree_bytes(os.path.join(ref, "data")) == tree_bytes(os.path.join(fault, "data"))
    results.append(("generation", kills, same, "every file byte-identical"))

    # 2. training (both on the reference data); a run killed before its first checkpoint starts over
    def train_command(run_dir):
        common = ["--num-objects", "3", "--num-views", "2", "--steps", "30", "--checkpoint-every", "5",
                  "--eval-every", "10", "--eval-episodes", "2", "--log-every", "5", "--warmup-steps", "0"]
        if os.path.exists(os.path.join(run_dir, "checkpoints", "latest.json")):
            return [PYTHON, "train.py", "--resume", run_dir]
        return [PYTHON, "train.py", "--data-dir", os.path.join(ref, "data"), "--run-dir", run_dir, "--model-config",
                config, "--overwrite", *common]

    run_with_kills(lambda: train_command(os.path.join(ref, "run")), 0, rng, 0)
    kills = run_with_kills(lambda: train_command(os.path.join(fault, "run")), args.kills, rng, 12.0)
    same_weights = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in
                       zip(weights(os.path.join(ref, "run")), weights(os.path.join(fault, "run")), strict=True))

    def rows(run_dir):
        return [(r["split"], r["step"]) for r in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl")))]

    same = same_weights and rows(os.path.join(ref, "run")) == rows(os.path.join(fault, "run"))
    results.append(("training", kills, same, "weights to rtol 1e-5, the same metrics.jsonl rows"))

    # 3. testing (both of the reference run)
    def test_command(out_dir):
        return [PYTHON, "test.py", "--run-dir", os.path.join(ref, "run"), "--data-dir", os.path.join(ref, "data"),
                "--num-pictures", "4", "--absent-queries", "1", "--out-dir", out_dir]

    run_with_kills(lambda: test_command(os.path.join(ref, "test")), 0, rng, 0)
    kills = run_with_kills(lambda: test_command(os.path.join(fault, "test")), args.kills, rng, 6.0)

    def metrics(out_dir):
        m = json.load(open(os.path.join(out_dir, "metrics.json")))
        return {k: v for k, v in m.items() if k not in ("scenes_per_s", "compile_s")}

    same = metrics(os.path.join(ref, "test")) == metrics(os.path.join(fault, "test"))
    results.append(("testing", kills, same, "metrics.json equal (speeds aside)"))

    left = litter(root)
    print(f"fault run in {root}, kill moments seeded with {args.seed}")
    print("| stage | kill -9s | result matches the uninterrupted run | compared |\n|---|---|---|---|")
    for stage, kills, same, compared in results:
        print(f"| {stage} | {kills} | {'yes' if same else 'NO'} | {compared} |")
    print(f"temp litter left: {left or 'none'}")
    sys.exit(0 if all(r[2] for r in results) and not left else 1)


if __name__ == "__main__":
    main()
