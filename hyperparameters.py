"""What a run trains with, and how it is given: the `Hyperparameters` (each a flag of train.py
and a key of options.json), where the run reads and writes (`Launch`), recipes (configs/NAME.py:
their overrides of the defaults) and the command line that combines them.

    python train.py --config pretrained --run-dir runs/mine --steps 6000   # a recipe, one value changed

A value is checked the same way wherever it comes from: a flag (argparse), a recipe
(load_recipe) or a resumed run's options.json (Hyperparameters.from_options).
"""

import argparse
import copy
import dataclasses
import importlib.util
import json
import os
import sys

from inference import RUN_SETTINGS, Inference
from models import INFERENCE_KEYS_OF_OLD_RUNS
from util import (DataError, at_least_one, flag_field, non_negative_float, non_negative_int, one_line, positive_float,
                  positive_int, read_json, unit_interval)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """What a run trains with: each field is a flag (--field-name), a key of options.json and,
    as v3_train.sh's upper-case variable, what a user edits. Built by keyword only."""

    model_config: str = flag_field("cpu", "seed (the original's sizes), cpu (the demo's), or a model_config.json")
    steps: int = flag_field(3000, "train steps in all", type=positive_int)
    scenes_per_step: int = flag_field(1, "B: scenes (episodes) per step, split over all devices",
                                      type=positive_int)
    num_objects: int = flag_field(16, "C: objects per scene per episode", type=positive_int)
    num_views: int = flag_field(4, "N: anchor (and positive) views per object", type=positive_int)
    absent_queries_per_scene: int = flag_field(
        4, "K: objects of the split NOT in the scene queried per episode, with empty targets", type=non_negative_int)
    absent_candidates: int = flag_field(
        0, "hard absent queries: draw this many objects not in the scene and query the K of them whose mean "
        "anchor embedding is nearest one of the scene's queried objects; 0: the K drawn at random",
        type=non_negative_int)
    optimizer: str = flag_field("adam", "the optax optimiser", choices=("adam", "adamw", "sgd"))
    learning_rate: float = flag_field(1e-3, "peak learning rate", type=positive_float)
    schedule: str = flag_field("cosine", "cosine: warmup then cosine decay to 0 at --steps",
                               choices=("constant", "cosine"))
    warmup_steps: int = flag_field(100, "linear warmup from 0", type=non_negative_int)
    weight_decay: float = flag_field(1e-4, "adamw only", type=non_negative_float)
    momentum: float = flag_field(0.9, "sgd only", type=non_negative_float)
    contrastive_loss_weight: float = flag_field(1.0, "of contrastive_loss", type=non_negative_float)
    classifier_loss_weight: float = flag_field(100.0, "of classifier_loss, the per-cell loss (~100x "
                                               "smaller than the contrastive one)", type=non_negative_float)
    box_loss_weight: float = flag_field(1.0, "of box_loss: the box head's objectness + coordinates losses",
                                        type=non_negative_float)
    box_ignore_iou: float = flag_field(
        0.0, "a prediction whose box overlaps an instance by more than this is not taught to be background "
        "(YOLOv3's ignore threshold: 0.5); 0: every prediction but the responsible one is", type=unit_interval)
    box_objectness: str = flag_field(
        "iou", "the responsible prediction's objectness target: one (YOLOv3's), or iou: the IoU of its box with "
        "the instance's (YOLOv2's), in a varifocal loss, so that a badly placed box scores low",
        choices=("one", "iou"))
    box_coordinates: str = flag_field(
        "giou", "the responsible prediction's coordinates loss: yolo (binary cross-entropy of the centre's offset "
        "in its cell, squared error of log size), or giou: 1 - the generalized IoU of its box with the instance's",
        choices=("yolo", "giou"))
    box_cells: int = flag_field(
        1, "cells responsible for each instance: 1, the one holding its centre (YOLOv2), or 3: also its nearer "
        "horizontal and vertical neighbour, whose boxes are taught to reach it (YOLOv5)", type=int, choices=(1, 3))
    box_head_convs: int = flag_field(
        2, "3x3 conv layers the box outputs read through, so that a cell sees its neighbours when it places a "
        "box (YOLOv3's heads); 0: each cell's box from its own features", type=non_negative_int)
    temperature: float = flag_field(1.0, "of the contrastive softmax", type=positive_float)
    contrastive_reduction: str = flag_field(
        "mean", "over a scene's C + K objects: mean, or sum (the original's: with the same weights, the contrastive "
        "term ~C times stronger)", choices=("mean", "sum"))
    embedding_batch_norm: str = flag_field(
        "batch", "in training, the embedding model's batch norm over all views of the step at once (batch), or over "
        "each object's N views (object: the original's)", choices=("batch", "object"))
    focal_alpha: float = flag_field(0.5, "of the classifier's sigmoid focal loss (the box objectness keeps 0.25)",
                                    type=unit_interval)
    focal_gamma: float = flag_field(
        0.0, "of the classifier's sigmoid focal loss; 0 with alpha 0.5: binary cross-entropy (halved); 2: the "
        "original's focal loss; the box objectness keeps 2",
        type=non_negative_float)
    dense_initializer: str = flag_field(
        "glorot_uniform", "initialiser of the obj_embeddings and scene_features kernels (truncated_normal: the "
        "original's)", choices=("glorot_uniform", "truncated_normal"))
    matching: str = flag_field(
        "film", "how the object embedding meets the scene: add (the original's: once, at the bottleneck) or film "
        "(also a scale and shift per channel after every decoder and classifier layer)", choices=("add", "film"))
    crop_references: float = flag_field(
        0.5, "share of the objects whose anchor views are cut from other training scenes (as test.py --references "
        "crops) instead of rendered; 0: the original's, every view a render", type=unit_interval)
    scene_zoom: float = flag_field(
        1.0, "Z: each training scene seen zoomed by a factor from [1/Z, Z] (log-uniform) at a random place, its "
        "targets moved with it (as a camera farther or nearer would see it); 1: as rendered", type=at_least_one)
    scene_zoom_direction: str = flag_field(
        "both", "of --scene-zoom: both ([1/Z, Z]) or out ([1/Z, 1]: only farther, as test_shift's cameras are)",
        choices=("both", "out"))
    scene_zoom_share: float = flag_field(
        1.0, "of --scene-zoom: the share of training scenes zoomed, the others as rendered", type=unit_interval)
    photometric: bool = flag_field(
        False, "photometric augmentation: each training scene and view recoloured (gamma, hue, saturation, brightness, "
        "contrast), and some blurred, noised and JPEG-compressed, apart (data.PHOTOMETRIC's ranges)")
    stop_scene_gradient: bool = flag_field(False, "no gradient from the scene loss into the embedding model")
    num_priors: int = flag_field(3, "A: box priors per cell, k-means on the training boxes; 0: no box head",
                                 type=non_negative_int)
    seed: int = flag_field(0, "seeds the initial weights, the box priors and the loader", type=non_negative_int)
    checkpoint_every: int = flag_field(500, "steps between checkpoints", type=positive_int)
    eval_every: int = flag_field(500, "steps between validations", type=positive_int)
    eval_episodes: int = flag_field(48, "validation episodes per validation", type=positive_int)
    log_every: int = flag_field(10, "steps per line of train metrics", type=positive_int)

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
        if isinstance(options, dict):  # how boxes were scored: a training option of older runs, now inference.json's
            options = {k: v for k, v in options.items() if k not in INFERENCE_KEYS_OF_OLD_RUNS}
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
                      "box_objectness": "one"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Launch:
    """Where a run reads and writes, how this process joins it and what it logs to: not
    hyperparameters; the last four are given anew on --resume (docs/training.md, Speed and scaling out).
    config: the recipe (configs/NAME.py) the hyperparameters started from."""

    data_dir: str
    run_dir: str
    config: str | None = None
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
    parser.add_argument("--config", help=f"a recipe: configs/NAME.py ({', '.join(recipes())}) or a path to one; its "
                        "overrides of the defaults below, which flags given here override in turn")
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
                        "(docs/training.md, Speed and scaling out); left unset with the two below: one process")
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
    if args.config and not args.resume:
        parser.set_defaults(**load_recipe(args.config)[0])
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
        launch = Launch(data_dir=args.data_dir, run_dir=args.run_dir, config=args.config, overwrite=args.overwrite,
                        **launch)
    if hp.warmup_steps >= hp.steps:
        parser.error(f"--warmup-steps {hp.warmup_steps} must be fewer than --steps {hp.steps}")
    return hp, launch


CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def recipes():
    """The recipes' names: configs/*.py."""
    return sorted(n[:-3] for n in os.listdir(CONFIGS_DIR) if n.endswith(".py") and not n.startswith("_"))


def load_recipe(name):
    """configs/NAME.py, or a path to such a file -> (its OVERRIDES of Hyperparameters' defaults, its
    INFERENCE: the run's inference settings, inference.RUN_SETTINGS), each checked as its flag's
    value would be; a DataError naming the file."""
    path = name if name.endswith(".py") else os.path.join(CONFIGS_DIR, f"{name}.py")
    if not os.path.isfile(path):
        raise DataError(f"--config {name}: no such recipe ({path}): give one of {', '.join(recipes())}, or a path to "
                        "a .py file")
    spec = importlib.util.spec_from_file_location(f"yolz_recipe_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a recipe is the user's code: any error in it is theirs to fix
        raise DataError(f"{path} does not run: {one_line(error)}") from None
    overrides, settings = getattr(module, "OVERRIDES", None), getattr(module, "INFERENCE", {})
    fields = {f.name: f for f in dataclasses.fields(Hyperparameters)}
    if not isinstance(overrides, dict) or not isinstance(settings, dict):
        raise DataError(f"{path}: a recipe sets OVERRIDES = {{hyperparameter: value}} (and INFERENCE = {{...}})")
    for key, value in overrides.items():
        if key not in fields or not option_fits(fields[key], value):
            raise DataError(f"{path}: {key} = {value!r} is not " + (f"what --{key.replace('_', '-')} takes" if key in
                            fields else "a hyperparameter of train.py's (python train.py --help lists them)"))
    if set(settings) - set(RUN_SETTINGS):
        raise DataError(f"{path}: INFERENCE sets {', '.join(RUN_SETTINGS)} only")
    try:
        Inference(**settings)
    except DataError as error:
        raise DataError(f"{path}: INFERENCE's {error}") from None
    return overrides, settings
