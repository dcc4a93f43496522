"""A run dir's life: what it holds, how it is started, resumed, overwritten and locked, its
checkpoints, curves and TensorBoard events, and the evaluation suite that tests it.

    RUN_DIR/options.json        the hyperparameters and where the run reads and writes (train.py)
    RUN_DIR/model_config.json   the models' sizes and box priors (models.ModelConfig)
    RUN_DIR/inference.json      how outputs become boxes, and the chosen thresholds (inference.py)
    RUN_DIR/{embedding,scene}.weights.h5, metrics.jsonl, loss.png, validation.png, debug/, checkpoints/
    RUN_DIR/NAME/               an evaluation by test.py (EVALUATIONS: the suite v3_test.sh runs)

options.json is the proof that a dir holds a run: only then does --overwrite remove entries of
these names, and it goes last when a run starts, so a kill part-way leaves a run still recognised.
"""

import contextlib
import errno
import fcntl
import importlib.util
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from data import SPLITS
from evaluate import not_test_outputs, written_by_test
from inference import LEGACY_POINT_FILE, RUN_FILE, RUN_SETTINGS, Inference
from models import load_weights, save_config, save_weights
from util import (DataError, atomic_write, composite_uint8, hstack, io_error_line, read_json, remove_stale_temps,
    save_figure, temp_path, tile, tint, vstack, write_json_atomic)

# The evaluation suite, in order: test.py --suite (v3_test.sh) and sweep.py run each into RUN_DIR/NAME
# as test.test(**kwargs). Validation first: it chooses the run's operating threshold when it has none.
# Then the robustness evaluations, the test objects under conditions outside the training ranges:
# cameras farther and lower (test_shift, plainly and with the far-camera pyramid where a scene asks
# for it), reference views cut from other scenes (test_crops), references lit from behind
# (test_backlit), scenes under a low tinted light (test_relit), everyday meshes among the objects
# (test_everyday); and test.
EVALUATIONS = {
    "validation": {"split_name": "validation"},
    "test_shift": {"split_name": "test_shift"},
    "test_shift_pyramid2_auto": {"split_name": "test_shift", "pyramid_auto": True},
    "test_crops": {"split_name": "test", "references": "crops"},
    "test_backlit": {"split_name": "test_backlit"},
    "test_relit": {"split_name": "test_relit"},
    "test_everyday": {"split_name": "test_everyday"},
    "test": {"split_name": "test"},
}


def in_data(data_dir, evaluation):
    """Whether the data dir has scenes of an EVALUATIONS entry's split (a split may be absent, from
    data made before it, or rendered with no scenes: --num-test-relit-scenes 0)."""
    path = os.path.join(data_dir, evaluation["split_name"], "manifest.json")
    return os.path.exists(path) and read_json(path).get("num_scenes", 0) > 0


def evaluation_flags(evaluation):
    """An EVALUATIONS entry as test.py's flags."""
    flags = ["--split", evaluation["split_name"]]
    if "references" in evaluation:
        flags += ["--references", evaluation["references"]]
    return flags + (["--pyramid-auto"] if evaluation.get("pyramid_auto") else [])


def chooses_threshold(run_dir, evaluation, settings=None):
    """Whether an EVALUATIONS entry chooses the run's operating threshold: validation, while the run
    has none for these inference settings."""
    return (evaluation["split_name"] == "validation"
            and Inference.for_run(run_dir, **(settings or {})).threshold is None)


def evaluation_dir(split_name, references, inference, runs_own):
    """The name test.py gives an evaluation: the split, then what differs from a plain one (crops,
    the pyramid, a way of scoring other than the run's own `runs_own` Inference, flips)."""
    scales, _ = inference.pyramid
    return (split_name + ("_crops" if references == "crops" else "") + "".join(f"_pyramid{s:g}" for s in scales)
            + ("_auto" if inference.pyramid_auto else "")
            + (f"_{inference.box_score}" if inference.box_score != runs_own.box_score else "")
            + (f"_power{inference.presence_power:g}" if inference.presence_power != runs_own.presence_power else "")
            + (f"_nms{inference.nms_iou:g}" if inference.nms_iou != runs_own.nms_iou else "")
            + ("_flips" if inference.flips else ""))


# what a run dir holds: --overwrite removes these and nothing else
RUN_ENTRIES = ("options.json", "model_config.json", "metrics.jsonl", "checkpoints", "debug", "embedding.weights.h5",
               "scene.weights.h5", "loss.png", "validation.png", "episode.png", "tensorboard", RUN_FILE,
               LEGACY_POINT_FILE, "baselines", "ablations")
# test.py's evaluation dirs (evaluation_dir): SPLIT, SPLIT_crops, SPLIT_pyramid2_auto, SPLIT_crops_pyramid1.4_flips
EVALUATION_DIR = re.compile(rf"({'|'.join(SPLITS)})(_crops)?(_pyramid[0-9.e+-]+)*(_auto)?(_objectness|_geometric)?"
                            r"(_power[0-9.e+-]+)?(_nms[0-9.e+-]+)?(_flips)?")


def run_entries(run_dir):
    """The names in run_dir that a run of yolz's has: RUN_ENTRIES and test.py's evaluation dirs.
    A name proves nothing: a data dir holds train/ and test/ too (holds_run)."""
    names = os.listdir(run_dir) if os.path.isdir(run_dir) else []
    return sorted(n for n in names if n in RUN_ENTRIES or EVALUATION_DIR.fullmatch(n))


def holds_run(run_dir):
    """Whether run_dir holds a run: an options.json that train.py wrote (a JSON object naming the
    run's data and run dirs and its hyperparameters), the one proof that its entries are yolz's."""
    try:
        options = read_json(os.path.join(run_dir, "options.json"))
    except DataError:
        return False
    return isinstance(options, dict) and {"data_dir", "run_dir", "steps", "seed", "model_config"} <= options.keys()


def check_new_run_dir(run_dir, overwrite):
    """A DataError if run_dir names a file; holds entries of a run's names that no run of yolz's
    wrote there (a data dir's splits, a user's test/), which a new run would write into and
    --overwrite would delete; or holds a run and --overwrite was not given. With --overwrite, an
    evaluation dir holding anything test.py does not write is refused too."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise DataError(f"--run-dir {run_dir} is a file: give a directory")
    held = run_entries(run_dir)
    if not held:
        return
    if not holds_run(run_dir):
        raise DataError(f"--run-dir {run_dir} holds {', '.join(held[:3])} but no run of train.py's (no options.json "
                        "it wrote): a run writes, and --overwrite removes, entries of those names; give a new or "
                        "empty --run-dir")
    if not overwrite:
        raise DataError(f"{run_dir} holds a run ({', '.join(held[:3])}...): carry it on with "
                        f"python train.py --resume {run_dir}, replace it with --overwrite, or give another "
                        "--run-dir")
    for name in held:
        path = os.path.join(run_dir, name)
        if name not in RUN_ENTRIES and os.path.isdir(path) and os.listdir(path) and not written_by_test(path):
            raise DataError(f"--overwrite {run_dir}: {name}/ holds {', '.join(not_test_outputs(path)[:3])}, which "
                            "test.py did not write: move them out of the run first")


def start_run_dir(run_dir, options, config, inference_settings):
    """Writes a new run's options.json, model_config.json, inference.json (inference.Inference's
    defaults with `inference_settings`, a recipe's, over them) and empty metrics.jsonl; with
    --overwrite, after removing the old run's entries (check_new_run_dir has found them yolz's).
    options.json, the proof of that, is removed last: a kill part-way leaves a run that
    --overwrite still recognises."""
    for name in sorted(run_entries(run_dir), key=lambda n: n == "options.json"):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    save_config(os.path.join(run_dir, "model_config.json"), config)
    settings = Inference(**inference_settings)
    write_json_atomic(os.path.join(run_dir, RUN_FILE), {**{k: getattr(settings, k) for k in RUN_SETTINGS},
                                                        "operating_points": []})
    write_json_atomic(os.path.join(run_dir, "options.json"), options)
    open(os.path.join(run_dir, "metrics.jsonl"), "w").close()
    os.makedirs(os.path.join(run_dir, "debug"))


def resume_run_dir(run_dir, steps, start):
    """Before training on from the checkpoint at step `start`: metrics rows past it (replayed
    steps) and torn ones are dropped, what killed checkpoints left is removed, a raised --steps
    recorded."""
    path = os.path.join(run_dir, "metrics.jsonl")
    kept = []
    with open(path) if os.path.exists(path) else contextlib.nullcontext(()) as lines:
        for line in lines:
            try:
                if json.loads(line)["step"] <= start:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError):  # a line torn by a kill mid-write
                continue
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        f.writelines(kept)
    root = os.path.join(run_dir, "checkpoints")
    for checkpoint in {n[1:].split(".tmp-")[0] for n in os.listdir(root) if n.startswith(".") and ".tmp-" in n}:
        remove_stale_temps(os.path.join(root, checkpoint))
    options = read_json(os.path.join(run_dir, "options.json"))
    if options["steps"] != steps:
        print(f"--steps {steps} (the run was set to {options['steps']})")
        write_json_atomic(os.path.join(run_dir, "options.json"), {**options, "steps": steps})


class TensorBoard:
    """--tensorboard: what metrics.jsonl and debug/ get, as TensorBoard events in RUN_DIR/tensorboard
    (tensorboardX: a writer alone, no TensorFlow; imported only when asked). On resume, events past
    the checkpoint (steps about to be replayed) are dropped, as metrics.jsonl's rows are."""

    def __init__(self, run_dir, start):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(os.path.join(run_dir, "tensorboard"), purge_step=start + 1 if start else None)

    @staticmethod
    def check():
        """A DataError, before anything is written, if tensorboardX is not installed."""
        if importlib.util.find_spec("tensorboardX") is None:
            raise DataError("--tensorboard needs tensorboardX: .venv/bin/pip install -r requirements-tracking.txt")

    def scalars(self, split, step, row):
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{split}/{key.replace('@', '_at_')}", value, step)  # TensorBoard's charset
        self.writer.flush()

    def image(self, tag, step, image):
        """(H, W, 3) uint8."""
        self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self):
        self.writer.close()




class Stopped(Exception):
    """Training stopped by Ctrl-C or a failed write (a full disk): the message says how to go on."""


def stopped_line(error, run_dir):
    """Why a started run stopped, where its last checkpoint is and the command that carries on."""
    cause = "interrupted" if isinstance(error, KeyboardInterrupt) else io_error_line(error, hint=False)
    first = "free some space, then " if getattr(error, "errno", None) == errno.ENOSPC else ""
    try:
        step = read_json(os.path.join(run_dir, "checkpoints", "latest.json"))["step"]
    except (DataError, KeyError, TypeError):
        return (f"{cause}, before the run's first checkpoint: {first}run the same command with --overwrite to start "
                "it again")
    return (f"{cause}; the last checkpoint is step {step} in {os.path.join(run_dir, 'checkpoints')}: {first}python "
            f"train.py --resume {run_dir} carries on from it")




def save_checkpoint(run_dir, step_num, models, params, nt_params, opt_state, keep=2):
    """checkpoints/step_NNNNNNN/ written under a temp name, renamed, then named in `latest`."""
    root = os.path.join(run_dir, "checkpoints")
    name = f"step_{step_num:07d}"
    shutil.rmtree(temp_path(os.path.join(root, name)), ignore_errors=True)
    shutil.rmtree(os.path.join(root, name), ignore_errors=True)  # of a run resumed before it: replaced
    with atomic_write(os.path.join(root, name)) as tmp:
        os.makedirs(tmp)
        save_weights(tmp, models, params, nt_params)
        leaves = jax.tree_util.tree_leaves(opt_state)
        np.savez(os.path.join(tmp, "optimizer.npz"), *[np.asarray(x) for x in leaves])
        # the loader's state is its position, step * scenes_per_step: no other randomness in training
        write_json_atomic(os.path.join(tmp, "state.json"), {"step": step_num})
    write_json_atomic(os.path.join(root, "latest.json"), {"name": name, "step": step_num})
    for old in sorted(n for n in os.listdir(root) if n.startswith("step_"))[:-keep]:
        shutil.rmtree(os.path.join(root, old))


def latest_checkpoint(run_dir):
    latest = os.path.join(run_dir, "checkpoints", "latest.json")
    if not os.path.exists(latest):
        raise DataError(f"{run_dir} has no checkpoint to resume from ({latest} is missing): start a new run")
    return os.path.join(run_dir, "checkpoints", read_json(latest)["name"])


def load_checkpoint(run_dir, models, opt_state_like):
    """Loads the latest checkpoint's weights into models -> (its step, the optimizer state)."""
    path = latest_checkpoint(run_dir)
    load_weights(path, models, "restore it and options.json, or start a new run")
    with np.load(os.path.join(path, "optimizer.npz")) as f:
        leaves = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(f.files))]
    opt_state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(opt_state_like), leaves)
    return read_json(os.path.join(path, "state.json"))["step"], opt_state




LOSS_CURVES = ("contrastive_loss", "classifier_loss", "box_objectness_loss", "box_coordinates_loss")
VALIDATION_CURVES = ("average_precision", "roc_auc", "f1@0.5", "positive_rate", "box_ap50")


def plot_curves(run_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    train = [r for r in lines if r["split"] == "train"]
    val = [r for r in lines if r["split"] == "validation"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in LOSS_CURVES:
        if key in train[0]:
            ax.plot([r["step"] for r in train], [r[key] for r in train], label=key)
    ax.set_xlabel("step"), ax.set_yscale("log"), ax.legend(), ax.set_title("training losses")
    save_figure(os.path.join(run_dir, "loss.png"), fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in VALIDATION_CURVES:
        if key in val[0]:
            ax.plot([r["step"] for r in val], [r[key] for r in val], marker="o", label=key)
    ax.set_xlabel("step"), ax.set_ylim(0, 1), ax.legend(), ax.set_title("validation (unseen objects)")
    save_figure(os.path.join(run_dir, "validation.png"), fig)


class RunDirLock:
    """An exclusive lock on a directory (RUN_DIR/.lock, flock + this process's PID in it): a second
    process asking for it gets a DirBusy error naming the holder. The kernel drops the lock when
    its holder dies, so a lock file left by a killed process is taken over."""

    class DirBusy(Exception):
        pass

    def __init__(self, directory):
        self.path = os.path.join(directory, ".lock")
        self.file = None

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise self.DirBusy(f"{os.path.dirname(self.path)} is in use by process {holder} (a training "
                               "running there): wait for it, or use another --run-dir") from None
        self.file.seek(0)
        previous = self.file.read().strip()
        if previous and previous != str(os.getpid()):
            print(f"taking over the lock on {os.path.dirname(self.path)} left by process {previous}, which is gone")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc):
        self.file.seek(0)
        self.file.truncate()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def debug_picture(episode, probs, count=4):
    """Rows of: the anchor views | scene tinted by y_true | scene tinted by y_pred; probs (Q, G, G)."""
    rows = []
    for c in range(min(count, len(probs))):
        views = composite_uint8(episode["anchors"][c], episode["anchor_backgrounds"][c])
        scene = episode["scene"]
        rows.append(hstack([tile(list(views), columns=2), tint(scene, episode["masks"][c], (0, 255, 0), 0.6),
                            tint(scene, probs[c], (255, 0, 0), 0.8)]))
    return vstack(rows)


def episode_picture(episode, count=6):
    """The blog's figure of a training episode: per object, its N anchor views (top row) and its N
    positive views (below), each on its background colour; objects side by side."""
    blocks = []
    for c in range(min(count, len(episode["anchors"]))):
        rows = [tile(list(composite_uint8(episode[kind][c], episode[f"{kind[:-1]}_backgrounds"][c])),
                     columns=len(episode[kind][c])) for kind in ("anchors", "positives")]
        blocks.append(vstack(rows, pad=2))
    return hstack(blocks, pad=10)
