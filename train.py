"""Trains the embedding and scene models jointly: one jitted stateless_call step with optax.

    python train.py --data-dir data/small --run-dir runs/demo --model-config cpu   # see v3_train.sh

The run dir describes itself: options.json (every flag) and model_config.json, read back by
--resume and by anything that loads the weights (embedding.weights.h5, scene.weights.h5).
Several devices or hosts: --scenes-per-step is split over all of them (distributed.py).
"""

import argparse
import dataclasses
import functools
import json
import os
import shutil
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm import tqdm  # noqa: E402

import distributed  # noqa: E402
import losses  # noqa: E402
from boxes import cell_targets, detections, kmeans_priors, visible  # noqa: E402
from data import DataError, EpisodeLoader, Split, composite, prefetch, read_json, write_json_atomic  # noqa: E402
from metrics import box_metrics, pixel_metrics  # noqa: E402
from models import CPU_CONFIG, SEED_CONFIG, ModelConfig, embedding_model, load_config, save_config, scene_model  # noqa: E402
from util import hstack, save_figure, save_png, tile, tint, vstack  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ.get("YOLZ_JAX_CACHE", os.path.expanduser("~/.cache/yolz/jax")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

MODEL_CONFIGS = {"seed": SEED_CONFIG, "cpu": CPU_CONFIG}


class Diverged(Exception):
    """The loss went NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# the step


@dataclasses.dataclass(frozen=True)
class Step:
    """What the jitted step closes over; hashable, so it is a static argument."""

    embedding: keras.Model
    scene: keras.Model
    config: ModelConfig
    optimizer: optax.GradientTransformation
    contrastive_weight: float
    scene_weight: float
    temperature: float
    focal_alpha: float
    focal_gamma: float
    stop_scene_gradient: bool  # no gradient from the scene loss into the embedding model
    box_weight: float  # of the box head's losses (objectness and coordinates)

    __hash__ = object.__hash__
    __eq__ = object.__eq__


def embed(step, emb_params, emb_nt, views, backgrounds, training):
    """(B, C, N, h, w, 4) uint8 views on (B, C, N, 3) backgrounds -> ((B, C, N, E), new nt)."""
    shape = views.shape[:3]
    images = composite(views, backgrounds).reshape((-1, *views.shape[3:5], 3))  # (B*C*N, h, w, 3)
    e, emb_nt = step.embedding.stateless_call(emb_params, emb_nt, images, training=training)
    return e.reshape((*shape, -1)), emb_nt


def detect(step, scene_params, scene_nt, scenes, embeddings, training):
    """(B, H, W, 3) uint8 scenes, (B, C, E) embeddings -> ((B, C, G, G) logits, (B, C, G, G, A, 5)
    box outputs or None without a box head, new nt).

    One scene per call of the scene model, its backbone once for all C objects; scenes are
    vmapped, and the batch-norm moving statistics of the B calls averaged (the same as
    averaging the B scenes' batch statistics into the moving average).
    """
    def one(scene, e):
        outputs, nt = step.scene.stateless_call(scene_params, scene_nt, [scene[None].astype("float32") / 255, e],
                                                training=training)
        logits, boxes = outputs if isinstance(outputs, (list, tuple)) else (outputs, None)
        return logits[..., 0], boxes, nt

    logits, boxes, nt = jax.vmap(one)(scenes, embeddings)
    return logits, boxes, [jnp.mean(v, axis=0) for v in nt]


def box_targets(step, boxes):
    """(B, C, I, 4) pixel boxes -> (B, C, G, G, A, 5) cell targets for the box head."""
    config = step.config
    targets = functools.partial(cell_targets, priors=jnp.asarray(config.priors), grid=config.grid_size,
                                stride=config.stride)
    return jax.vmap(jax.vmap(targets))(boxes)


def loss_fn(params, nt_params, batch, step):
    (emb_params, scene_params), (emb_nt, scene_nt) = params, nt_params
    anchors, emb_nt = embed(step, emb_params, emb_nt, batch["anchors"], batch["anchor_backgrounds"], True)
    positives, _ = embed(step, emb_params, emb_nt, batch["positives"], batch["positive_backgrounds"], True)
    contrastive = jnp.mean(jax.vmap(functools.partial(losses.contrastive_loss, temperature=step.temperature))(
        anchors, positives))
    objects = losses.mean_embedding(anchors)  # (B, C, E)
    if step.stop_scene_gradient:
        objects = jax.lax.stop_gradient(objects)
    logits, boxes, scene_nt = detect(step, scene_params, scene_nt, batch["scene"], objects, True)
    scene = losses.focal_loss(logits, batch["masks"], step.focal_alpha, step.focal_gamma)
    loss = step.contrastive_weight * contrastive + step.scene_weight * scene
    metrics = {"contrastive_loss": contrastive, "scene_loss": scene}
    if boxes is not None:
        objectness, coordinates = losses.box_loss(boxes, box_targets(step, batch["boxes"]), step.focal_alpha,
                                                  step.focal_gamma)
        loss += step.box_weight * (objectness + coordinates)
        metrics.update(objectness_loss=objectness, box_loss=coordinates)
    return loss, ((emb_nt, scene_nt), {"loss": loss, **metrics})


@functools.partial(jax.jit, static_argnames="step")
def train_step(params, nt_params, opt_state, batch, step):
    grads, (nt_params, metrics) = jax.grad(loss_fn, has_aux=True)(params, nt_params, batch, step)
    updates, opt_state = step.optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return params, nt_params, opt_state, metrics


@functools.partial(jax.jit, static_argnames="step")
def eval_step(params, nt_params, batch, step):
    """-> (B, C, G, G) P(object), (B, C, G, G, A, 5) raw box outputs (None without a box head) and
    (B, C, E) object embeddings, in inference mode."""
    (emb_params, scene_params), (emb_nt, scene_nt) = params, nt_params
    anchors, _ = embed(step, emb_params, emb_nt, batch["anchors"], batch["anchor_backgrounds"], False)
    objects = losses.mean_embedding(anchors)
    logits, boxes, _ = detect(step, scene_params, scene_nt, batch["scene"], objects, False)
    return jax.nn.sigmoid(logits), boxes, objects


@functools.partial(jax.jit, static_argnames="step")
def embed_step(params, nt_params, views, backgrounds, step):
    """(K, N, h, w, 4) uint8 views on (K, N, 3) backgrounds -> (K, E) mean embeddings, inference mode."""
    e, _ = embed(step, params[0], nt_params[0], views[None], backgrounds[None], False)
    return losses.mean_embedding(e)[0]


@functools.partial(jax.jit, static_argnames="step")
def scene_step(params, nt_params, scene, embeddings, step):
    """(H, W, 3) uint8 scene, (C, E) embeddings -> (C, G, G) P(object) and (C, G, G, A, 5) raw box
    outputs (None without a box head), inference mode: the backbone runs once for the C objects."""
    logits, boxes, _ = detect(step, params[1], nt_params[1], scene[None], embeddings[None], False)
    return jax.nn.sigmoid(logits[0]), None if boxes is None else boxes[0]


# ---------------------------------------------------------------------------------------------
# state: models <-> arrays, checkpoints


def model_state(embedding, scene):
    params = ([v.value for v in embedding.trainable_variables], [v.value for v in scene.trainable_variables])
    nt_params = ([v.value for v in embedding.non_trainable_variables],
                 [v.value for v in scene.non_trainable_variables])
    return params, nt_params


def assign_state(embedding, scene, params, nt_params):
    for model, tv, ntv in ((embedding, params[0], nt_params[0]), (scene, params[1], nt_params[1])):
        for variable, value in zip(model.trainable_variables, tv):
            variable.assign(value)
        for variable, value in zip(model.non_trainable_variables, ntv):
            variable.assign(value)


def save_weights(directory, embedding, scene, params, nt_params):
    assign_state(embedding, scene, params, nt_params)
    for name, model in (("embedding", embedding), ("scene", scene)):
        tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, os.path.join(directory, f"{name}.weights.h5"))


def save_checkpoint(run_dir, step_num, embedding, scene, params, nt_params, opt_state, keep=2):
    """checkpoints/step_NNNNNNN/ written under a temp name, renamed, then named in `latest`."""
    root = os.path.join(run_dir, "checkpoints")
    name = f"step_{step_num:07d}"
    tmp = os.path.join(root, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_weights(tmp, embedding, scene, params, nt_params)
    leaves = jax.tree_util.tree_leaves(opt_state)
    np.savez(os.path.join(tmp, "optimizer.npz"), *[np.asarray(x) for x in leaves])
    # the loader's state is its position, step * scenes_per_step: no other randomness in training
    write_json_atomic(os.path.join(tmp, "state.json"), {"step": step_num})
    shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    os.rename(tmp, os.path.join(root, name))
    write_json_atomic(os.path.join(root, "latest.json"), {"name": name, "step": step_num})
    for old in sorted(n for n in os.listdir(root) if n.startswith("step_"))[:-keep]:
        shutil.rmtree(os.path.join(root, old))


def latest_checkpoint(run_dir):
    latest = os.path.join(run_dir, "checkpoints", "latest.json")
    if not os.path.exists(latest):
        raise DataError(f"{run_dir} has no checkpoint to resume from ({latest} is missing): start a new run")
    return os.path.join(run_dir, "checkpoints", read_json(latest)["name"])


def load_checkpoint(run_dir, embedding, scene, opt_state_like):
    path = latest_checkpoint(run_dir)
    embedding.load_weights(os.path.join(path, "embedding.weights.h5"))
    scene.load_weights(os.path.join(path, "scene.weights.h5"))
    with np.load(os.path.join(path, "optimizer.npz")) as f:
        leaves = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(f.files))]
    opt_state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(opt_state_like), leaves)
    return read_json(os.path.join(path, "state.json"))["step"], opt_state


def load_run(run_dir):
    """A finished run rebuilt from its own files -> (options, config, step, params, nt_params)."""
    if not os.path.isdir(run_dir):
        raise DataError(f"run dir {run_dir} does not exist: give one made by v3_train.sh, or pretrained")
    needed = ("options.json", "model_config.json", "embedding.weights.h5", "scene.weights.h5")
    missing = [name for name in needed if not os.path.exists(os.path.join(run_dir, name))]
    if missing:
        raise DataError(f"{run_dir} has no {', '.join(missing)}: is it a finished training run? (finish an "
                        f"interrupted one with: python train.py --resume {run_dir})")
    options = read_json(os.path.join(run_dir, "options.json"))
    config = load_config(os.path.join(run_dir, "model_config.json"))
    embedding, scene = embedding_model(config), scene_model(config)
    for name, model in (("embedding", embedding), ("scene", scene)):
        try:
            model.load_weights(os.path.join(run_dir, f"{name}.weights.h5"))
        except (ValueError, KeyError, OSError) as error:
            raise DataError(f"{run_dir}/{name}.weights.h5 does not fit the run's model_config.json ({error}): "
                            "the run dir is inconsistent, retrain or restore it") from error
    step = Step(embedding, scene, config, None, options["contrastive_loss_weight"],
                options["classifier_loss_weight"], options["temperature"], options["focal_alpha"],
                options["focal_gamma"], options["stop_scene_gradient"], options.get("box_loss_weight", 0.0))
    return (options, config, step, *model_state(embedding, scene))


def check_scene_size(split, config):
    scene_size = split.manifest["arrays"]["rgb"]["shape"][0]
    if scene_size != config.scene_size:
        raise DataError(f"{split.data_dir} has {scene_size}x{scene_size} scenes but the model config expects "
                        f"{config.scene_size}: use a --model-config made for {scene_size}x{scene_size} scenes (cpu: "
                        "320, seed: 640), or data rendered at the model's size")


# ---------------------------------------------------------------------------------------------
# options, validation, pictures


def make_optimizer(args):
    if args.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, args.learning_rate, args.warmup_steps, max(args.steps, 1))
    elif args.warmup_steps:
        lr = optax.linear_schedule(0.0, args.learning_rate, args.warmup_steps)
    else:
        lr = args.learning_rate
    if args.optimizer == "adam":
        return optax.adam(lr)
    if args.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=args.weight_decay)
    return optax.sgd(lr, momentum=args.momentum)


def validate(params, nt_params, step, loader, num_episodes, batch_size):
    """Per-cell metrics (and box AP50 with a box head) over the first num_episodes validation
    episodes (fixed, grey backgrounds, objects present only)."""
    config = step.config
    scores, labels, queries, episodes = [], [], [], []
    for start in range(0, num_episodes, batch_size):
        batch = [loader.episode(i) for i in range(start, min(start + batch_size, num_episodes))]
        batch = {k: np.stack([e[k] for e in batch]) for k in batch[0]}
        probs, raw, _ = eval_step(params, nt_params, {k: batch[k] for k in EVAL_KEYS}, step)
        scores.append(np.asarray(probs))
        labels.append(batch["masks"])
        if raw is not None:  # one query per (scene, object): its detections and its visible true boxes
            raw, true = np.asarray(raw), batch["boxes"]  # (B, C, G, G, A, 5), (B, C, I, 4)
            for outputs, boxes in zip(raw.reshape(-1, *raw.shape[2:]), true.reshape(-1, *true.shape[2:])):
                queries.append((*detections(outputs, config.priors, config.stride, 0.01, 0.5), visible(boxes)))
        if not episodes:
            episodes.append((batch, np.asarray(probs)))
    figures = pixel_metrics(np.concatenate(scores), np.concatenate(labels))
    if queries:
        figures["box_ap50"] = box_metrics(queries, iou_thresholds=(0.5,))["ap50"]
    return figures, episodes[0]


LAUNCH_OPTIONS = ("coordinator_address", "num_processes", "process_id")
EVAL_KEYS = ("anchors", "anchor_backgrounds", "scene")
TRAIN_KEYS = ("anchors", "anchor_backgrounds", "positives", "positive_backgrounds", "scene", "masks", "boxes")


def debug_picture(batch, probs, count=4):
    """Rows of: the anchor views | scene tinted by y_true | scene tinted by y_pred."""
    rows = []
    for c in range(min(count, probs.shape[1])):
        views = (composite(batch["anchors"][0, c], batch["anchor_backgrounds"][0, c]) * 255).astype(np.uint8)
        scene = batch["scene"][0]
        rows.append(hstack([tile(list(views), columns=2), tint(scene, batch["masks"][0, c], (0, 255, 0), 0.6),
                            tint(scene, probs[0, c], (255, 0, 0), 0.8)]))
    return vstack(rows)


def plot_curves(run_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    train = [r for r in lines if r["split"] == "train"]
    val = [r for r in lines if r["split"] == "validation"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("contrastive_loss", "scene_loss", "objectness_loss", "box_loss"):
        if key in train[0]:
            ax.plot([r["step"] for r in train], [r[key] for r in train], label=key)
    ax.set_xlabel("step"), ax.set_yscale("log"), ax.legend(), ax.set_title("training losses")
    save_figure(os.path.join(run_dir, "loss.png"), fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("average_precision", "roc_auc", "f1@0.5", "positive_rate", "box_ap50"):
        if key in val[0]:
            ax.plot([r["step"] for r in val], [r[key] for r in val], marker="o", label=key)
    ax.set_xlabel("step"), ax.set_ylim(0, 1), ax.legend(), ax.set_title("validation (unseen objects)")
    save_figure(os.path.join(run_dir, "validation.png"), fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", default="data/small", help="made by generate_split_chunk_data.sh")
    parser.add_argument("--run-dir", help="where weights, metrics and pictures go (required unless --resume)")
    parser.add_argument("--resume", help="a run dir to continue; every other option is read from it")
    parser.add_argument("--model-config", default="cpu",
                        help="seed (the original's sizes), cpu (the demo's), or a model_config.json")
    parser.add_argument("--steps", type=int, default=3000, help="train steps in all")
    parser.add_argument("--scenes-per-step", type=int, default=1, help="B: scenes (episodes) per step")
    parser.add_argument("--num-objects", type=int, default=16, help="C: objects per scene per episode")
    parser.add_argument("--num-views", type=int, default=4, help="N: anchor (and positive) views per object")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="cosine",
                        help="cosine: warmup then cosine decay to 0 at --steps")
    parser.add_argument("--warmup-steps", type=int, default=100, help="linear warmup from 0")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="adamw only")
    parser.add_argument("--momentum", type=float, default=0.9, help="sgd only")
    parser.add_argument("--contrastive-loss-weight", type=float, default=1.0)
    parser.add_argument("--classifier-loss-weight", type=float, default=100.0,
                        help="the focal loss is ~100x smaller than the contrastive one")
    parser.add_argument("--temperature", type=float, default=1.0, help="of the contrastive softmax")
    parser.add_argument("--focal-alpha", type=float, default=0.25)
    parser.add_argument("--focal-gamma", type=float, default=2.0)
    parser.add_argument("--stop-scene-gradient", action="store_true",
                        help="no gradient from the scene loss into the embedding model")
    parser.add_argument("--num-priors", type=int, default=3,
                        help="A: box priors per cell, k-means on the training boxes; 0: no box head")
    parser.add_argument("--box-loss-weight", type=float, default=1.0,
                        help="of the box head's objectness and coordinates losses")
    parser.add_argument("--absent-queries-per-scene", type=int, default=4,
                        help="K: objects of the split NOT in the scene queried per episode, empty targets")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the loader")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between validations")
    parser.add_argument("--eval-episodes", type=int, default=48, help="validation episodes per validation")
    parser.add_argument("--log-every", type=int, default=10, help="steps per line of train metrics")
    parser.add_argument("--coordinator-address", help="several processes (hosts): HOST:PORT of process 0 "
                        "(README, Scaling out); left unset with the two below: one process")
    parser.add_argument("--num-processes", type=int, help="several processes: how many in all")
    parser.add_argument("--process-id", type=int, help="several processes: this one's index, 0 first")
    args = parser.parse_args(argv)
    if args.resume:  # the run's options, but how this process joins the run is given anew
        saved = read_json(os.path.join(args.resume, "options.json"))
        launch = {k: getattr(args, k) for k in LAUNCH_OPTIONS}
        args = argparse.Namespace(**{**saved, **launch, "resume": args.resume, "run_dir": args.resume})
    elif not args.run_dir:
        parser.error("--run-dir is required (or --resume RUN_DIR)")
    if args.warmup_steps >= args.steps:
        parser.error(f"--warmup-steps {args.warmup_steps} must be fewer than --steps {args.steps}")
    return args


def training_priors(split, k, seed, max_scenes=1000):
    """k box priors (width, height) by k-means over the visible training boxes (of up to max_scenes scenes)."""
    boxes = np.concatenate([split.scene(i)["boxes"].reshape(-1, 4) for i in range(min(split.num_scenes, max_scenes))])
    boxes = visible(boxes)  # (n, 4)
    return tuple(tuple(round(float(v), 2) for v in p) for p in kmeans_priors(boxes[:, 2:] - boxes[:, :2], k, seed))


def build(args, train_split=None):
    """-> (config, step): the models (initial weights from the seed) and what the step needs.
    A new run's box priors come from train_split's boxes; a config file's are kept."""
    config = (MODEL_CONFIGS[args.model_config] if args.model_config in MODEL_CONFIGS
              else load_config(args.model_config))
    if args.num_priors and len(config.priors) != args.num_priors:
        if train_split is None:
            raise ValueError("box priors need the training split")
        config = dataclasses.replace(config, priors=training_priors(train_split, args.num_priors, args.seed))
    elif not args.num_priors:
        config = dataclasses.replace(config, priors=())
    keras.utils.set_random_seed(args.seed)
    embedding, scene = embedding_model(config), scene_model(config)
    step = Step(embedding, scene, config, make_optimizer(args), args.contrastive_loss_weight,
                args.classifier_loss_weight, args.temperature, args.focal_alpha, args.focal_gamma,
                args.stop_scene_gradient, args.box_loss_weight)
    return config, step


def train(args):
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    distributed.check_batch_size(args.scenes_per_step)
    chief = distributed.is_chief()
    train_split, val_split = Split(args.data_dir, "train"), Split(args.data_dir, "validation")
    if args.resume:  # the run's own config, box priors included
        latest_checkpoint(args.run_dir)
        args.model_config = os.path.join(args.run_dir, "model_config.json")
    config, step = build(args, train_split)
    check_scene_size(train_split, config)
    params, nt_params = model_state(step.embedding, step.scene)
    opt_state = step.optimizer.init(params)
    start = 0
    if args.resume:
        start, opt_state = load_checkpoint(args.run_dir, step.embedding, step.scene, opt_state)
        params, nt_params = model_state(step.embedding, step.scene)
        print(f"resuming {args.run_dir} at step {start}")
    elif chief:
        os.makedirs(args.run_dir, exist_ok=True)
        write_json_atomic(os.path.join(args.run_dir, "options.json"), vars(args))
        save_config(os.path.join(args.run_dir, "model_config.json"), config)
        open(os.path.join(args.run_dir, "metrics.jsonl"), "w").close()
        os.makedirs(os.path.join(args.run_dir, "debug"), exist_ok=True)
    mesh = distributed.batch_mesh()
    params, nt_params, opt_state = distributed.replicate((params, nt_params, opt_state), mesh)

    loader = EpisodeLoader(train_split, args.num_objects, args.num_views, args.seed, training=True,
                           position=start * args.scenes_per_step, num_absent=args.absent_queries_per_scene)
    val_loader = EpisodeLoader(val_split, args.num_objects, args.num_views, args.seed, training=False)
    batches = prefetch(loader.batches(args.scenes_per_step, distributed.host_share(args.scenes_per_step)))
    log = open(os.path.join(args.run_dir, "metrics.jsonl"), "a") if chief else None
    window, wait, t0 = [], 0.0, time.perf_counter()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, unit="step", dynamic_ncols=True,
               disable=not chief)
    for i in bar:
        t = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t
        batch = distributed.shard_batch({k: batch[k] for k in TRAIN_KEYS}, mesh)
        params, nt_params, opt_state, metrics = train_step(params, nt_params, opt_state, batch, step)
        metrics = {k: float(v) for k, v in metrics.items()}
        if not np.isfinite(metrics["loss"]):
            raise Diverged(f"loss is {metrics['loss']} at step {i + 1} ({metrics}): training stopped; the last "
                           f"good checkpoint is in {os.path.join(args.run_dir, 'checkpoints')}. Try a lower "
                           "--learning-rate")
        window.append(metrics)
        done = i + 1
        bar.set_postfix(contrastive=f"{metrics['contrastive_loss']:.3f}", scene=f"{metrics['scene_loss']:.4f}")
        if chief and (done % args.log_every == 0 or done == args.steps):
            elapsed = time.perf_counter() - t0
            row = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
            log.write(json.dumps({"split": "train", "step": done, **row, "input_wait_fraction": wait / elapsed,
                                  "steps_per_s": len(window) / elapsed}) + "\n")
            log.flush()
            window, wait, t0 = [], 0.0, time.perf_counter()
        paused = time.perf_counter()  # validation and checkpoints are left out of steps/s
        if chief and (done % args.eval_every == 0 or done == args.steps):  # on host copies, one device
            figures, (val_batch, probs) = validate(*jax.device_get((params, nt_params)), step, val_loader,
                                                   args.eval_episodes, args.scenes_per_step)
            log.write(json.dumps({"split": "validation", "step": done, **figures}) + "\n")
            log.flush()
            save_png(os.path.join(args.run_dir, "debug", f"step_{done:07d}.png"), debug_picture(val_batch, probs))
            bar.write(f"step {done}: validation AP {figures['average_precision']:.3f} (positive rate "
                      f"{figures['positive_rate']:.3f}), ROC AUC {figures['roc_auc']:.3f}, F1@0.5 {figures['f1@0.5']:.3f}"
                      + (f", box AP50 {figures['box_ap50']:.3f}" if "box_ap50" in figures else ""))
        if chief and (done % args.checkpoint_every == 0 or done == args.steps):
            save_checkpoint(args.run_dir, done, step.embedding, step.scene,
                            *jax.device_get((params, nt_params, opt_state)))
        t0 += time.perf_counter() - paused
    if chief:
        log.close()
        save_weights(args.run_dir, step.embedding, step.scene, *jax.device_get((params, nt_params)))
        plot_curves(args.run_dir)
        print(f"wrote {args.run_dir}: weights, metrics.jsonl, loss.png, validation.png, debug/")
    return params, nt_params


def main(argv=None):
    try:
        train(parse_args(argv))
    except (DataError, Diverged) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
