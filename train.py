"""Trains the embedding and scene models jointly: one jitted stateless_call step with optax.

    python train.py --data-dir data/small --run-dir runs/demo --model-config cpu   # see v3_train.sh

Every hyperparameter is a field of `Hyperparameters` (its flag is the field's name with dashes);
the run dir describes itself: options.json (the hyperparameters, the data and run dirs) and
model_config.json, read back by --resume and by anything that loads the weights
(embedding.weights.h5, scene.weights.h5; see models.load_run). Several devices or hosts:
--scenes-per-step is split over all of them (distributed.py).

Reading order: Hyperparameters, the loss and the jitted train step, checkpoints, validation and
pictures, the loop.
"""

import argparse
import contextlib
import copy
import dataclasses
import errno
import functools
import importlib.util
import json
import os
import re
import shutil
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm import tqdm  # noqa: E402

import distributed  # noqa: E402
from boxes import kmeans_priors, visible  # noqa: E402
from data import (SPLITS, DataError, EpisodeLoader, SceneCrops, Split, composite_uint8, prefetch,  # noqa: E402
                  read_json, write_json_atomic)
from evaluate import box_queries, evaluate, model_answer, not_test_outputs, written_by_test  # noqa: E402
from losses import total_loss  # noqa: E402
from metrics import box_metrics, pixel_metrics  # noqa: E402
from models import (CPU_CONFIG, SEED_CONFIG, build_from_file, cell_outputs, check_scene_size,  # noqa: E402
                    embed_views, enable_compilation_cache, load_config, load_weights, mean_embedding, model_state,
                    save_config, save_weights)
from util import (RunDirLock, at_least_one, atomic_write, hstack, io_error_line, non_negative_float,  # noqa: E402
                  non_negative_int, positive_float, positive_int, remove_stale_temps, save_figure, save_png,
                  temp_path, tile, tint, unit_interval, vstack)

MODEL_CONFIGS = {"seed": SEED_CONFIG, "cpu": CPU_CONFIG}


def hyperparameter(default, help, **argparse_options):
    return dataclasses.field(default=default, metadata={"help": help, **argparse_options})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """What a run trains with: each field is a flag (--field-name), a key of options.json and,
    as v3_train.sh's upper-case variable, what a user edits. Built by keyword only."""

    model_config: str = hyperparameter("cpu", "seed (the original's sizes), cpu (the demo's), or a model_config.json")
    steps: int = hyperparameter(3000, "train steps in all", type=positive_int)
    scenes_per_step: int = hyperparameter(1, "B: scenes (episodes) per step, split over all devices",
                                          type=positive_int)
    num_objects: int = hyperparameter(16, "C: objects per scene per episode", type=positive_int)
    num_views: int = hyperparameter(4, "N: anchor (and positive) views per object", type=positive_int)
    absent_queries_per_scene: int = hyperparameter(
        4, "K: objects of the split NOT in the scene queried per episode, with empty targets", type=non_negative_int)
    absent_candidates: int = hyperparameter(
        0, "hard absent queries: draw this many objects not in the scene and query the K of them whose mean "
        "anchor embedding is nearest one of the scene's queried objects; 0: the K drawn at random",
        type=non_negative_int)
    optimizer: str = hyperparameter("adam", "the optax optimiser", choices=("adam", "adamw", "sgd"))
    learning_rate: float = hyperparameter(1e-3, "peak learning rate", type=positive_float)
    schedule: str = hyperparameter("cosine", "cosine: warmup then cosine decay to 0 at --steps",
                                   choices=("constant", "cosine"))
    warmup_steps: int = hyperparameter(100, "linear warmup from 0", type=non_negative_int)
    weight_decay: float = hyperparameter(1e-4, "adamw only", type=non_negative_float)
    momentum: float = hyperparameter(0.9, "sgd only", type=non_negative_float)
    contrastive_loss_weight: float = hyperparameter(1.0, "of contrastive_loss", type=non_negative_float)
    classifier_loss_weight: float = hyperparameter(100.0, "of classifier_loss, the per-cell loss (~100x "
                                                   "smaller than the contrastive one)", type=non_negative_float)
    box_loss_weight: float = hyperparameter(1.0, "of box_loss: the box head's objectness + coordinates losses",
                                            type=non_negative_float)
    box_ignore_iou: float = hyperparameter(
        0.0, "a prediction whose box overlaps an instance by more than this is not taught to be background "
        "(YOLOv3's ignore threshold: 0.5); 0: every prediction but the responsible one is", type=unit_interval)
    box_objectness: str = hyperparameter(
        "iou", "the responsible prediction's objectness target: one (YOLOv3's), or iou: the IoU of its box with "
        "the instance's (YOLOv2's), in a varifocal loss, so that a badly placed box scores low (beat one with "
        "two box head convs at the demo budget, docs/results.md)",
        choices=("one", "iou"))
    box_coordinates: str = hyperparameter(
        "giou", "the responsible prediction's coordinates loss: yolo (binary cross-entropy of the centre's offset "
        "in its cell, squared error of log size), or giou: 1 - the generalized IoU of its box with the instance's "
        "(beat yolo with the 3x3 box head at the demo budget, docs/results.md)",
        choices=("yolo", "giou"))
    box_cells: int = hyperparameter(
        1, "cells responsible for each instance: 1, the one holding its centre (YOLOv2), or 3: also its nearer "
        "horizontal and vertical neighbour, whose boxes are taught to reach it (YOLOv5)", type=int, choices=(1, 3))
    box_head_convs: int = hyperparameter(
        2, "3x3 conv layers the box outputs read through, so that a cell sees its neighbours when it places a "
        "box (YOLOv3's heads; at the demo budget 1 beat 0 and 2 beat 1, docs/results.md); 0: each cell's box from "
        "its own features", type=non_negative_int)
    box_score: str = hyperparameter(
        "geometric", "a box's score: objectness, its own (YOLO's), or geometric: the geometric mean of that and its "
        "cell's P(object), which ranks absent objects' look-alikes lower: more recall at few false alarms "
        "(docs/results.md); read at test time only",
        choices=("objectness", "geometric"))
    presence_power: float = hyperparameter(
        0.0, "every box of a query scored box_score's way times the query's peak P(object) to this power: a "
        "query-wide 'is it here at all' that ranks absent objects' look-alikes lower. 4 on the 18000-step "
        "recipe: +0.1 recall at few false alarms for -0.03 box AP50; at the demo budget, whose classifier is less "
        "sure, -0.12 box AP50 for +0.03 recall, hence 0, no gate (docs/results.md); read at test time only",
        type=non_negative_float)
    temperature: float = hyperparameter(1.0, "of the contrastive softmax", type=positive_float)
    contrastive_reduction: str = hyperparameter(
        "mean", "over a scene's C + K objects: mean, or sum (the original's: with the same weights, the contrastive "
        "term ~C times stronger)", choices=("mean", "sum"))
    embedding_batch_norm: str = hyperparameter(
        "batch", "in training, the embedding model's batch norm over all views of the step at once (batch), or over "
        "each object's N views (object: the original's)", choices=("batch", "object"))
    focal_alpha: float = hyperparameter(0.5, "of the classifier's sigmoid focal loss (the box objectness keeps 0.25)",
                                        type=unit_interval)
    focal_gamma: float = hyperparameter(
        0.0, "of the classifier's sigmoid focal loss; 0 with alpha 0.5: binary cross-entropy (halved), which beat "
        "the original's focal gamma 2 at the demo budget (docs/training.md); the box objectness keeps 2",
        type=non_negative_float)
    dense_initializer: str = hyperparameter(
        "glorot_uniform", "initialiser of the obj_embeddings and scene_features kernels (truncated_normal: the "
        "original's)", choices=("glorot_uniform", "truncated_normal"))
    matching: str = hyperparameter(
        "film", "how the object embedding meets the scene: add (the original's: once, at the bottleneck) or film "
        "(also a scale and shift per channel after every decoder and classifier layer; beat add at the demo "
        "budget, docs/results.md)", choices=("add", "film"))
    crop_references: float = hyperparameter(
        0.5, "share of the objects whose anchor views are cut from other training scenes (as test.py --references "
        "crops) instead of rendered; 0.5 beat 0 on cropped and rendered references (docs/results.md); 0: the "
        "original's, every view a render", type=unit_interval)
    scene_zoom: float = hyperparameter(
        1.0, "Z: each training scene seen zoomed by a factor from [1/Z, Z] (log-uniform) at a random place, its "
        "targets moved with it (as a camera farther or nearer would see it); 1: as rendered", type=at_least_one)
    scene_zoom_direction: str = hyperparameter(
        "both", "of --scene-zoom: both ([1/Z, Z]) or out ([1/Z, 1]: only farther, as test_shift's cameras are)",
        choices=("both", "out"))
    scene_zoom_share: float = hyperparameter(
        1.0, "of --scene-zoom: the share of training scenes zoomed, the others as rendered", type=unit_interval)
    stop_scene_gradient: bool = hyperparameter(False, "no gradient from the scene loss into the embedding model")
    num_priors: int = hyperparameter(3, "A: box priors per cell, k-means on the training boxes; 0: no box head",
                                     type=non_negative_int)
    seed: int = hyperparameter(0, "seeds the initial weights, the box priors and the loader", type=non_negative_int)
    checkpoint_every: int = hyperparameter(500, "steps between checkpoints", type=positive_int)
    eval_every: int = hyperparameter(500, "steps between validations", type=positive_int)
    eval_episodes: int = hyperparameter(48, "validation episodes per validation", type=positive_int)
    log_every: int = hyperparameter(10, "steps per line of train metrics", type=positive_int)

    @property
    def absent_drawn(self):
        """The absent objects an episode draws: the candidates, or the K queried."""
        return max(self.absent_queries_per_scene, self.absent_candidates)

    @classmethod
    def from_options(cls, options, source="options.json"):
        """From options.json's dict (a run's hyperparameters and its Launch), each value checked as its
        flag's would be: a DataError naming `source` for a value of the wrong kind or range, or a key
        that is neither. A key it lacks was written before that flag existed: it takes the behaviour
        runs had then (BEFORE_THEIR_FLAGS), else the default."""
        fix = "restore it from the run's first command, or start a new run"
        if not isinstance(options, dict):
            raise DataError(f"{source} is not a run's options (a JSON object): {fix}")
        known = {f.name for f in dataclasses.fields(cls)} | {f.name for f in dataclasses.fields(Launch)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DataError(f"{source}: {unknown[0]!r} is no option of train.py's: {fix}")
        given = {}
        for field in dataclasses.fields(cls):
            if field.name in options:
                value = options[field.name]
                if not option_fits(field, value):
                    raise DataError(f"{source}: {field.name} {json.dumps(value)} is not what --"
                                    f"{field.name.replace('_', '-')} takes: {fix}")
                given[field.name] = float(value) if field.type is float else value
        return cls(**{**BEFORE_THEIR_FLAGS, **given})


def option_fits(field, value):
    """Whether a JSON value is one that the field's flag could have given: its type (an int for a
    float too; a bool for nothing but a bool), its range and its choices."""
    if (field.type is bool) != isinstance(value, bool):
        return False
    if not isinstance(value, {bool: bool, int: int, float: (int, float), str: str}[field.type]):
        return False
    if "choices" in field.metadata and value not in field.metadata["choices"]:
        return False
    try:
        field.metadata.get("type", str)(str(value))
    except argparse.ArgumentTypeError:
        return False
    return True


# what runs did before these flags existed, where today's default differs: an older run resumes as it began
BEFORE_THEIR_FLAGS = {"crop_references": 0.0, "matching": "add", "box_head_convs": 0, "box_coordinates": "yolo",
                      "box_score": "objectness", "box_objectness": "one"}


# ---------------------------------------------------------------------------------------------
# the loss and the step


def hardest_absent(anchors, num_present, num_absent):
    """(B, C + K', N, E) anchor view embeddings, the C present objects first -> (B, C + K) int: the
    objects to query, the C and the K of the K' absent ones whose mean embedding is nearest (cosine)
    one of the C's: the look-alikes a "not here" answer has to hold against. No gradient flows
    through the choice."""
    objects = jax.lax.stop_gradient(mean_embedding(anchors))  # (B, C + K', E)
    present, absent = objects[:, :num_present], objects[:, num_present:]
    nearest = jnp.max(jnp.einsum("bke,bce->bkc", absent, present), axis=-1)  # (B, K')
    chosen = jax.lax.top_k(nearest, num_absent)[1] + num_present  # (B, K)
    return jnp.concatenate([jnp.broadcast_to(jnp.arange(num_present), (len(chosen), num_present)), chosen], axis=1)


def take_objects(x, order):
    """(B, Q, ...) and (B, Q') int -> (B, Q', ...): each batch row's objects in that order."""
    return jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)


def loss_fn(params, nt_params, batch, models, hp):
    """(params, nt_params) as (embedding's, scene's) pairs, a batch (TRAIN_KEYS) -> (loss, (new
    nt_params, metrics)). The anchors' pass updates the embedding's batch-norm statistics. With
    hp.absent_candidates, the batch holds C + K' objects and the C + K chosen by hardest_absent
    go on (their positives alone are embedded)."""
    (emb_params, scene_params), (emb_nt, scene_nt) = params, nt_params
    per_object = hp.embedding_batch_norm == "object"
    anchors, emb_nt = embed_views(models, emb_params, emb_nt, batch["anchors"], batch["anchor_backgrounds"], True,
                                  per_object)
    if hp.absent_candidates > hp.absent_queries_per_scene:
        order = hardest_absent(anchors, hp.num_objects, hp.absent_queries_per_scene)
        anchors = take_objects(anchors, order)
        batch = {**batch, **{k: take_objects(batch[k], order)
                             for k in ("positives", "positive_backgrounds", "masks", "boxes")}}
    positives, _ = embed_views(models, emb_params, emb_nt, batch["positives"], batch["positive_backgrounds"], True,
                               per_object)
    objects = mean_embedding(anchors)  # (B, Q, E)
    if hp.stop_scene_gradient:
        objects = jax.lax.stop_gradient(objects)
    logits, box_outputs, scene_nt = cell_outputs(models, scene_params, scene_nt, batch["scene"], objects, True)
    loss, metrics = total_loss(anchors, positives, logits, box_outputs, batch["masks"], batch["boxes"], hp,
                               models.config)
    return loss, ((emb_nt, scene_nt), metrics)


@functools.partial(jax.jit, static_argnames=("models", "hp", "optimizer"))
def train_step(params, nt_params, opt_state, batch, models, hp, optimizer):
    """One optimiser step -> (params, nt_params, opt_state, metrics: the loss terms and grad_norm)."""
    grads, (nt_params, metrics) = jax.grad(loss_fn, has_aux=True)(params, nt_params, batch, models, hp)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, nt_params, opt_state, {**metrics, "grad_norm": optax.tree.norm(grads)}


TRAIN_KEYS = ("anchors", "anchor_backgrounds", "positives", "positive_backgrounds", "scene", "masks", "boxes")


def make_optimizer(hp):
    if hp.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, hp.learning_rate, hp.warmup_steps, max(hp.steps, 1))
    elif hp.warmup_steps:
        lr = optax.linear_schedule(0.0, hp.learning_rate, hp.warmup_steps)
    else:
        lr = hp.learning_rate
    if hp.optimizer == "adam":
        return optax.adam(lr)
    if hp.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=hp.weight_decay)
    return optax.sgd(lr, momentum=hp.momentum)


def training_priors(split, k, seed, max_scenes=1000):
    """k box priors (width, height) by k-means over the visible training boxes (of up to max_scenes scenes)."""
    boxes = np.concatenate([split.scene(i)["boxes"].reshape(-1, 4) for i in range(min(split.num_scenes, max_scenes))])
    boxes = visible(boxes)  # (n, 4)
    return tuple(tuple(round(float(v), 2) for v in p) for p in kmeans_priors(boxes[:, 2:] - boxes[:, :2], k, seed))


def build(hp, train_split=None):
    """-> Models with initial weights from hp.seed. A new run's box priors come from train_split's
    boxes; a config file's are kept."""
    config = MODEL_CONFIGS[hp.model_config] if hp.model_config in MODEL_CONFIGS else load_config(hp.model_config)
    if hp.num_priors and len(config.priors) != hp.num_priors:
        if train_split is None:
            raise ValueError("box priors need the training split")
        config = dataclasses.replace(config, priors=training_priors(train_split, hp.num_priors, hp.seed))
    elif not hp.num_priors:
        config = dataclasses.replace(config, priors=())
    return build_from_file(dataclasses.replace(config, dense_initializer=hp.dense_initializer, matching=hp.matching,
                                               box_cells=hp.box_cells, box_head_convs=hp.box_head_convs,
                                               box_score=hp.box_score, presence_power=hp.presence_power),
                           hp.model_config, hp.seed)


# ---------------------------------------------------------------------------------------------
# checkpoints


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


# ---------------------------------------------------------------------------------------------
# validation and pictures


def validate(models, params, nt_params, split, hp):
    """Per-cell figures (and box AP50 with a box head) over the first hp.eval_episodes validation
    episodes (fixed, views on grey, objects present only) -> (figures, Predictions)."""
    pred = evaluate(split, model_answer(models, params, nt_params), num_views=hp.num_views, num_objects=hp.num_objects,
                    num_episodes=hp.eval_episodes, batch_size=hp.scenes_per_step, seed=hp.seed)
    figures = pixel_metrics(pred.probs, pred.masks)
    if pred.detections:
        figures["box_ap50"] = box_metrics(box_queries(pred)[0], iou_thresholds=(0.5,))["ap50"]
    return figures, pred


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Launch:
    """Where a run reads and writes, how this process joins it and what it logs to: not
    hyperparameters; the last four are given anew on --resume (docs/training.md, Scaling out)."""

    data_dir: str
    run_dir: str
    resume: str | None = None
    overwrite: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    tensorboard: bool = False


LAUNCH_OPTIONS = ("coordinator_address", "num_processes", "process_id", "tensorboard")


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", default="data/small", help="made by generate_split_chunk_data.sh")
    parser.add_argument("--run-dir", help="where weights, metrics and pictures go (required unless --resume)")
    parser.add_argument("--resume", help="a run dir to continue; its hyperparameters and data dir are read from it "
                        "(--steps may be raised to train longer)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --run-dir (its weights, checkpoints, metrics and pictures)")
    for field in dataclasses.fields(Hyperparameters):
        flag, meta = "--" + field.name.replace("_", "-"), dict(field.metadata)
        if field.type is bool:
            parser.add_argument(flag, action="store_true", help=meta["help"])
        else:
            parser.add_argument(flag, default=field.default, **{"type": field.type, **meta})
    parser.add_argument("--coordinator-address", help="several processes (hosts): HOST:PORT of process 0 "
                        "(docs/training.md, Scaling out); left unset with the two below: one process")
    parser.add_argument("--num-processes", type=int, help="several processes: how many in all")
    parser.add_argument("--process-id", type=int, help="several processes: this one's index, 0 first")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also log the metrics and pictures as TensorBoard events in RUN_DIR/tensorboard "
                        "(pip install -r requirements-tracking.txt; then tensorboard --logdir runs)")
    return parser


RESUME_FLAGS = ("steps", *LAUNCH_OPTIONS)  # what --resume accepts besides: all else is the run's


def given_flags(parser, argv):
    """The dests of the options present on the command line (as opposed to left at their default),
    however spelt: --flag=VALUE and argparse's abbreviations (--run for --run-dir) included."""
    given = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            given._add_action(copy.copy(action)).default = argparse.SUPPRESS
    return set(vars(given.parse_known_args(argv)[0]))


def parse_args(argv=None):
    """-> (Hyperparameters, Launch); with --resume, the run's own hyperparameters."""
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    launch = {k: getattr(args, k) for k in LAUNCH_OPTIONS}
    if args.resume:
        if not os.path.isdir(args.resume):
            parser.error(f"--resume {args.resume}: no such run dir")
        refused = given_flags(parser, argv) - {"resume", *RESUME_FLAGS}
        if refused:
            parser.error(f"--resume {args.resume} trains on with the run's own options ({args.resume}/options.json); "
                         f"{', '.join('--' + k.replace('_', '-') for k in sorted(refused))} cannot change then (only "
                         "--steps, to train longer, and how this process joins a multi-host run)")
        path = os.path.join(args.resume, "options.json")
        saved = read_json(path)
        hp = Hyperparameters.from_options(saved, path)
        if not isinstance(saved.get("data_dir"), str):
            raise DataError(f"{path}: data_dir {json.dumps(saved.get('data_dir'))} is not a path: restore it")
        if "steps" in given_flags(parser, argv):
            if args.steps < hp.steps:
                parser.error(f"--steps {args.steps}: the run was set to {hp.steps} steps; --resume may only raise it")
            hp = dataclasses.replace(hp, steps=args.steps)
        launch = Launch(data_dir=saved["data_dir"], run_dir=args.resume, resume=args.resume, **launch)
    else:
        if not args.run_dir:
            parser.error("--run-dir is required (or --resume RUN_DIR)")
        hp = Hyperparameters(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Hyperparameters)})
        launch = Launch(data_dir=args.data_dir, run_dir=args.run_dir, overwrite=args.overwrite, **launch)
    if hp.warmup_steps >= hp.steps:
        parser.error(f"--warmup-steps {hp.warmup_steps} must be fewer than --steps {hp.steps}")
    return hp, launch


# what a run dir holds: --overwrite removes these and nothing else
RUN_ENTRIES = ("options.json", "model_config.json", "metrics.jsonl", "checkpoints", "debug", "embedding.weights.h5",
               "scene.weights.h5", "loss.png", "validation.png", "episode.png", "tensorboard", "operating_point.json",
               "baselines", "ablations")
# test.py's evaluation dirs: SPLIT, SPLIT_crops, SPLIT_pyramid2_auto, SPLIT_crops_pyramid1.4_pyramid2_flips
EVALUATION_DIR = re.compile(rf"({'|'.join(SPLITS)})(_crops)?(_pyramid[0-9.e+-]+)*(_auto)?(_flips)?")


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


def check_new_run_dir(launch):
    """A DataError if run_dir names a file; holds entries of a run's names that no run of yolz's
    wrote there (a data dir's splits, a user's test/), which a new run would write into and
    --overwrite would delete; or holds a run and --overwrite was not given. With --overwrite, an
    evaluation dir holding anything test.py does not write is refused too."""
    run_dir = launch.run_dir
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise DataError(f"--run-dir {run_dir} is a file: give a directory")
    held = run_entries(run_dir)
    if not held:
        return
    if not holds_run(run_dir):
        raise DataError(f"--run-dir {run_dir} holds {', '.join(held[:3])} but no run of train.py's (no options.json "
                        "it wrote): a run writes, and --overwrite removes, entries of those names; give a new or "
                        "empty --run-dir")
    if not launch.overwrite:
        raise DataError(f"{run_dir} holds a run ({', '.join(held[:3])}...): carry it on with "
                        f"python train.py --resume {run_dir}, replace it with --overwrite, or give another "
                        "--run-dir")
    for name in held:
        path = os.path.join(run_dir, name)
        if name not in RUN_ENTRIES and os.path.isdir(path) and os.listdir(path) and not written_by_test(path):
            raise DataError(f"--overwrite {run_dir}: {name}/ holds {', '.join(not_test_outputs(path)[:3])}, which "
                            "test.py did not write: move them out of the run first")


def start_run_dir(run_dir, hp, launch, config):
    """Writes a new run's options.json, model_config.json and empty metrics.jsonl (with --overwrite,
    after removing the old run's entries: check_new_run_dir has found them yolz's). options.json, the
    proof of that, goes last: a kill part-way leaves a run that --overwrite still recognises."""
    for name in sorted(run_entries(run_dir), key=lambda n: n == "options.json"):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    write_json_atomic(os.path.join(run_dir, "options.json"), {**dataclasses.asdict(hp), **dataclasses.asdict(launch)})
    save_config(os.path.join(run_dir, "model_config.json"), config)
    open(os.path.join(run_dir, "metrics.jsonl"), "w").close()
    os.makedirs(os.path.join(run_dir, "debug"))


def resume_run_dir(run_dir, hp, start):
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
    if options["steps"] != hp.steps:
        print(f"--steps {hp.steps} (the run was set to {options['steps']})")
        write_json_atomic(os.path.join(run_dir, "options.json"), {**options, "steps": hp.steps})


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


class Diverged(Exception):
    """The loss went NaN or infinite."""


def train(hp, launch):
    """Trains (or, with launch.resume, carries on) a run -> the final (params, nt_params). Every
    check runs before anything is written; process 0 holds the run dir's lock throughout."""
    distributed.initialize(launch.coordinator_address, launch.num_processes, launch.process_id)
    distributed.check_batch_size(hp.scenes_per_step)
    chief = distributed.is_chief()
    run_dir = launch.run_dir
    if launch.resume:  # the run's own config, box priors included
        latest_checkpoint(run_dir)
        hp = dataclasses.replace(hp, model_config=os.path.join(run_dir, "model_config.json"))
    else:
        check_new_run_dir(launch)
    if launch.tensorboard:
        TensorBoard.check()
    train_split, val_split = Split(launch.data_dir, "train"), Split(launch.data_dir, "validation")
    models = build(hp, train_split)
    check_scene_size(train_split, models.config)
    loader = EpisodeLoader(train_split, hp.num_objects, hp.num_views, hp.seed, training=True,
                           num_absent=hp.absent_drawn, crop_share=hp.crop_references,
                           crops=SceneCrops(train_split) if hp.crop_references else None, zoom=hp.scene_zoom,
                           zoom_in=hp.scene_zoom_direction == "both", zoom_share=hp.scene_zoom_share)
    EpisodeLoader(val_split, hp.num_objects, hp.num_views, hp.seed, training=False, positives=False)  # C, N fit?
    if chief:
        os.makedirs(run_dir, exist_ok=True)
    with RunDirLock(run_dir) if chief else contextlib.nullcontext():
        try:
            return train_in(run_dir, hp, launch, models, loader, val_split, chief)
        except (OSError, KeyboardInterrupt) as error:
            raise Stopped(stopped_line(error, run_dir)) from None


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


def device_batches(loader, scenes_per_step, mesh):
    """Endless train batches (TRAIN_KEYS) of this process's share of each step's scenes, loaded and
    put on the mesh's devices in prefetch's thread, so that the step does not wait for the copy."""
    return prefetch(distributed.shard_batch({k: b[k] for k in TRAIN_KEYS}, mesh)
                    for b in loader.batches(scenes_per_step, distributed.host_share(scenes_per_step)))


def train_in(run_dir, hp, launch, models, loader, val_split, chief):
    """train()'s loop, the checks done and the run dir locked."""
    optimizer = make_optimizer(hp)
    params, nt_params = model_state(models)
    opt_state = optimizer.init(params)
    start = 0
    if launch.resume:
        start, opt_state = load_checkpoint(run_dir, models, opt_state)
        params, nt_params = model_state(models)
        print(f"resuming {run_dir} at step {start} of {hp.steps}, with its hyperparameters ({run_dir}/options.json)")
        if chief:
            resume_run_dir(run_dir, hp, start)
    elif chief:
        start_run_dir(run_dir, hp, launch, models.config)
        save_png(os.path.join(run_dir, "episode.png"), episode_picture(loader.episode(0)))
    board = TensorBoard(run_dir, start) if chief and launch.tensorboard else None
    if board and not start:
        board.image("episode", 0, episode_picture(loader.episode(0)))
    mesh = distributed.batch_mesh()
    params, nt_params, opt_state = distributed.replicate((params, nt_params, opt_state), mesh)

    loader.position = start * hp.scenes_per_step
    batches = device_batches(loader, hp.scenes_per_step, mesh)
    log = open(os.path.join(run_dir, "metrics.jsonl"), "a") if chief else None
    window, wait, t0 = [], 0.0, time.perf_counter()
    bar = tqdm(range(start, hp.steps), initial=start, total=hp.steps, unit="step", dynamic_ncols=True,
               disable=not chief)
    for i in bar:
        t = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t
        params, nt_params, opt_state, metrics = train_step(params, nt_params, opt_state, batch, models, hp, optimizer)
        metrics = {k: float(v) for k, v in metrics.items()}
        if not np.isfinite(metrics["loss"]):
            raise Diverged(f"loss is {metrics['loss']} at step {i + 1} ({metrics}): training stopped; the last "
                           f"good checkpoint is in {os.path.join(run_dir, 'checkpoints')}. Try a lower "
                           "--learning-rate")
        window.append(metrics)
        done = i + 1
        bar.set_postfix({k.removesuffix("_loss"): f"{metrics[k]:.4f}" for k in LOSS_CURVES[:2]})
        if chief and (done % hp.log_every == 0 or done == hp.steps):
            elapsed = time.perf_counter() - t0
            row = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
            row.update(input_wait_fraction=wait / elapsed, steps_per_s=len(window) / elapsed)
            log.write(json.dumps({"split": "train", "step": done, **row}) + "\n")
            log.flush()
            if board:
                board.scalars("train", done, row)
            window, wait, t0 = [], 0.0, time.perf_counter()
        paused = time.perf_counter()  # validation and checkpoints are left out of steps/s
        if chief and (done % hp.eval_every == 0 or done == hp.steps):  # on host copies, one device
            figures, pred = validate(models, *jax.device_get((params, nt_params)), val_split, hp)
            log.write(json.dumps({"split": "validation", "step": done, **figures}) + "\n")
            log.flush()
            picture = debug_picture(pred.loader.episode(0), pred.probs[0])
            save_png(os.path.join(run_dir, "debug", f"step_{done:07d}.png"), picture)
            if board:
                board.scalars("validation", done, figures)
                board.image("debug", done, picture)
            bar.write(f"step {done}: validation AP {figures['average_precision']:.3f} (positive rate "
                      f"{figures['positive_rate']:.3f}), ROC AUC {figures['roc_auc']:.3f}, "
                      f"F1@0.5 {figures['f1@0.5']:.3f}"
                      + (f", box AP50 {figures['box_ap50']:.3f}" if "box_ap50" in figures else ""))
        if chief and (done % hp.checkpoint_every == 0 or done == hp.steps):
            save_checkpoint(run_dir, done, models, *jax.device_get((params, nt_params, opt_state)))
        t0 += time.perf_counter() - paused
    if chief:
        log.close()
        if board:
            board.close()
        save_weights(run_dir, models, *jax.device_get((params, nt_params)))
        plot_curves(run_dir)
        print(f"wrote {run_dir}: weights, metrics.jsonl, loss.png, validation.png, debug/")
    return params, nt_params


def main(argv=None):
    enable_compilation_cache()
    try:
        train(*parse_args(argv))
    except (DataError, Diverged, RunDirLock.DirBusy) as error:
        sys.exit(f"error: {error}")
    except Stopped as error:
        sys.exit(str(error))
    except OSError as error:  # before the run started: a read-only run dir, ...
        sys.exit(io_error_line(error))
    except KeyboardInterrupt:
        sys.exit("interrupted before training started: nothing was written")


if __name__ == "__main__":
    main()
