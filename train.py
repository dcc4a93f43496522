"""Trains the embedding and scene models jointly: one jitted stateless_call step with optax.

    python train.py --config demo --data-dir data/small --run-dir runs/demo   # see v3_train.sh; ~17 min, 2 cores

What a run trains with is `hyperparameters.Hyperparameters` (flags, recipes of configs/,
options.json); what its run dir holds and how it is started, resumed and checkpointed is
runs.py's. Several devices or hosts: --scenes-per-step is split over all of them
(distributed.py).

Reading order: the loss and the jitted train step, the optimiser, building the models,
validation, the loop.
"""

import contextlib
import dataclasses
import functools
import json
import os
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
from data import EpisodeLoader, SceneCrops, Split, prefetch  # noqa: E402
from evaluate import box_queries, evaluate  # noqa: E402
from hyperparameters import load_recipe, parse_args  # noqa: E402
from inference import Inference  # noqa: E402
from losses import total_loss  # noqa: E402
from metrics import box_metrics, pixel_metrics  # noqa: E402
from models import (CPU_CONFIG, SEED_CONFIG, Run, build_from_file, cell_outputs, check_scene_size,  # noqa: E402
                    embed_views, enable_compilation_cache, load_config, mean_embedding, model_state, save_weights)
from runs import (LOSS_CURVES, RunDirLock, Stopped, TensorBoard, check_new_run_dir, debug_picture,  # noqa: E402
                  episode_picture, latest_checkpoint, load_checkpoint, plot_curves, resume_run_dir, save_checkpoint,
                  start_run_dir, stopped_line)
from util import exits_in_one_line, save_png  # noqa: E402

MODEL_CONFIGS = {"seed": SEED_CONFIG, "cpu": CPU_CONFIG}


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
                                               box_cells=hp.box_cells, box_head_convs=hp.box_head_convs),
                           hp.model_config, hp.seed)


# ---------------------------------------------------------------------------------------------
# checkpoints


# ---------------------------------------------------------------------------------------------
# validation and pictures


def validate(models, params, nt_params, split, hp):
    """Per-cell figures (and box AP50 with a box head) over the first hp.eval_episodes validation
    episodes (fixed, views on grey, objects present only) -> (figures, Predictions)."""
    pred = evaluate(split, Inference().answer(Run(models, params, nt_params)), num_views=hp.num_views,
                    num_objects=hp.num_objects,
                    num_episodes=hp.eval_episodes, batch_size=hp.scenes_per_step, seed=hp.seed)
    figures = pixel_metrics(pred.probs, pred.masks)
    if pred.detections:
        figures["box_ap50"] = box_metrics(box_queries(pred)[0], iou_thresholds=(0.5,))["ap50"]
    return figures, pred


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
        check_new_run_dir(run_dir, launch.overwrite)
    if launch.tensorboard:
        TensorBoard.check()
    train_split, val_split = Split(launch.data_dir, "train"), Split(launch.data_dir, "validation")
    models = build(hp, train_split)
    check_scene_size(train_split, models.config)
    loader = EpisodeLoader(train_split, hp.num_objects, hp.num_views, hp.seed, training=True,
                           num_absent=hp.absent_drawn, crop_share=hp.crop_references,
                           crops=SceneCrops(train_split) if hp.crop_references else None, zoom=hp.scene_zoom,
                           zoom_in=hp.scene_zoom_direction == "both", zoom_share=hp.scene_zoom_share,
                           photometric=hp.photometric)
    EpisodeLoader(val_split, hp.num_objects, hp.num_views, hp.seed, training=False, positives=False)  # C, N fit?
    if chief:
        os.makedirs(run_dir, exist_ok=True)
    with RunDirLock(run_dir) if chief else contextlib.nullcontext():
        try:
            return train_in(run_dir, hp, launch, models, loader, val_split, chief)
        except (OSError, KeyboardInterrupt) as error:
            raise Stopped(stopped_line(error, run_dir)) from None


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
            resume_run_dir(run_dir, hp.steps, start)
    elif chief:
        start_run_dir(run_dir, {**dataclasses.asdict(hp), **dataclasses.asdict(launch)}, models.config,
                      load_recipe(launch.config)[1] if launch.config else {})
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
    with exits_in_one_line("interrupted before training started: nothing was written", (Diverged, RunDirLock.DirBusy)):
        try:
            train(*parse_args(argv))
        except Stopped as error:
            sys.exit(str(error))


if __name__ == "__main__":
    main()
