"""The loss and one real train step on synthetic arrays: seconds, no pybullet. Run these
(`pytest -m "not slow"`) after editing losses.py, models.py or train.loss_fn."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

import train
from conftest import TINY_MODEL
from hyperparameters import Hyperparameters
from models import build_models, model_state

B, Q, N = 2, 4, 2  # scenes, queries per scene (the last one absent), views per object
PRIORS = ((12.0, 12.0), (20.0, 20.0))
jitted = functools.partial(jax.jit, static_argnames=("models", "hp"))  # op by op, a grad takes ~30 s


def synthetic_batch(config, seed=0):
    """A batch in the loader's layout where object q is a square of colour q: views of it are that
    colour, the scene shows it where its box and mask say. Query Q-1 is absent (empty targets)."""
    rng = np.random.default_rng(seed)
    s, g, v = config.scene_size, config.grid_size, config.view_size
    colours = rng.integers(0, 256, (Q, 3), dtype=np.uint8)
    scene = np.full((B, s, s, 3), 128, np.uint8)
    masks = np.zeros((B, Q, g, g), np.uint8)
    boxes = np.full((B, Q, 2, 4), -1, np.int16)  # (B, Q, I, 4), -1 rows hidden
    for b in range(B):
        for q in range(Q - 1):
            x0, y0 = rng.integers(0, s - 24, 2)
            size = int(rng.integers(10, 24))
            scene[b, y0:y0 + size, x0:x0 + size] = colours[q]
            boxes[b, q, 0] = (x0, y0, x0 + size, y0 + size)
            cell = s // g
            masks[b, q, y0 // cell:(y0 + size - 1) // cell + 1, x0 // cell:(x0 + size - 1) // cell + 1] = 1
    views = np.zeros((B, Q, 2 * N, v, v, 4), np.uint8)  # transparent around a centred square
    views[..., v // 4:3 * v // 4, v // 4:3 * v // 4, :3] = colours[None, :, None, None, None]
    views[..., v // 4:3 * v // 4, v // 4:3 * v // 4, 3] = 255
    backgrounds = rng.integers(0, 256, (B, Q, 2 * N, 3), dtype=np.uint8)
    return {"anchors": views[:, :, :N], "anchor_backgrounds": backgrounds[:, :, :N], "positives": views[:, :, N:],
            "positive_backgrounds": backgrounds[:, :, N:], "scene": scene, "masks": masks, "boxes": boxes}


def setup(priors=PRIORS, **hyperparameters):
    hp = Hyperparameters(schedule="constant", warmup_steps=0, num_priors=len(priors), **hyperparameters)
    models = build_models(dataclasses.replace(TINY_MODEL, priors=priors, box_cells=hp.box_cells,
                                              box_head_convs=hp.box_head_convs), seed=0)
    return hp, models, synthetic_batch(models.config)


WEIGHTS = dict(contrastive_loss_weight=2.0, classifier_loss_weight=30.0, box_loss_weight=0.5)


def initial_losses(**hyperparameters):
    """loss_fn's metrics at the initial weights on the synthetic batch, as floats."""
    hp, models, batch = setup(**hyperparameters, **WEIGHTS)
    params, nt_params = model_state(models)
    _, (_, metrics) = jitted(train.loss_fn)(params, nt_params, batch, models, hp)
    return {k: float(v) for k, v in metrics.items()}


def train_steps(steps, **hyperparameters):
    """`steps` real train steps on one fixed synthetic batch -> (their metrics as floats, initial and
    final nt_params). The objectness target is YOLOv3's 1 unless asked: the IoU target rises as the
    boxes improve, so its loss need not fall over a few steps even when everything learns."""
    hyperparameters.setdefault("box_objectness", "one")
    hp, models, batch = setup(learning_rate=3e-3, **hyperparameters, **WEIGHTS)
    optimizer = train.make_optimizer(hp)
    params, nt_params = model_state(models)
    initial_nt, opt_state, history = nt_params, optimizer.init(params), []
    for _ in range(steps):
        params, nt_params, opt_state, metrics = train.train_step(params, nt_params, opt_state, batch, models, hp,
                                                                 optimizer)
        history.append({k: float(v) for k, v in metrics.items()})
    return history, initial_nt, nt_params


@pytest.fixture(scope="module")
def twelve_steps():
    return train_steps(12)


def assert_weighted_sum(metrics, box_head):
    assert all(np.isfinite(v) for v in metrics.values())
    expected = 2.0 * metrics["contrastive_loss"] + 30.0 * metrics["classifier_loss"]
    if box_head:
        assert metrics["box_loss"] == pytest.approx(metrics["box_objectness_loss"] + metrics["box_coordinates_loss"])
        expected += 0.5 * metrics["box_loss"]
    else:
        assert not [k for k in metrics if k.startswith("box")]
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)


def test_loss_is_the_weighted_sum_of_finite_terms(twelve_steps):
    history, initial_nt, final_nt = twelve_steps
    assert_weighted_sum(history[0], box_head=True)
    # training mode updates the batch-norm moving statistics, shapes kept
    assert [np.shape(v) for v in final_nt[0]] == [np.shape(v) for v in initial_nt[0]]
    assert not all(np.allclose(a, b) for a, b in zip(final_nt[1], initial_nt[1]))


def test_loss_without_a_box_head():
    hp, models, batch = setup((), **WEIGHTS)
    params, nt_params = model_state(models)
    loss, (_, metrics) = jitted(train.loss_fn)(params, nt_params, batch, models, hp)
    metrics = {k: float(v) for k, v in metrics.items()}
    assert metrics["loss"] == pytest.approx(float(loss))
    assert_weighted_sum(metrics, box_head=False)


def test_box_ignore_threshold_only_lowers_the_objectness_loss():
    """Ignoring near misses drops terms from the objectness sum (each >= 0), never adds any."""
    losses = {iou: initial_losses(box_ignore_iou=iou) for iou in (0.0, 0.01)}  # 0.01: ~all near ones ignored
    assert losses[0.01]["box_objectness_loss"] < losses[0.0]["box_objectness_loss"]
    for term in ("contrastive_loss", "classifier_loss", "box_coordinates_loss"):
        assert losses[0.01][term] == pytest.approx(losses[0.0][term], rel=1e-6), term


def test_iou_objectness_changes_only_the_objectness_term():
    losses = {target: initial_losses(box_objectness=target) for target in ("one", "iou")}
    assert losses["iou"]["box_objectness_loss"] != pytest.approx(losses["one"]["box_objectness_loss"], rel=1e-3)
    for term in ("contrastive_loss", "classifier_loss", "box_coordinates_loss"):
        assert losses["iou"][term] == pytest.approx(losses["one"][term], rel=1e-6), term


def test_giou_coordinates_change_only_the_coordinates_term():
    losses = {loss: initial_losses(box_coordinates=loss) for loss in ("yolo", "giou")}
    assert 0 < losses["giou"]["box_coordinates_loss"] < 2  # 1 - GIoU, GIoU in (-1, 1]
    assert losses["giou"]["box_coordinates_loss"] != pytest.approx(losses["yolo"]["box_coordinates_loss"], rel=1e-3)
    for term in ("contrastive_loss", "classifier_loss", "box_objectness_loss"):
        assert losses["giou"][term] == pytest.approx(losses["yolo"][term], rel=1e-6), term


def test_train_steps_with_giou_coordinates_lower_them():
    history = [m["box_coordinates_loss"] for m in train_steps(8, box_coordinates="giou")[0]]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]


def test_train_steps_with_three_cells_per_instance_lower_the_box_loss():
    history = np.array([(m["box_objectness_loss"], m["box_coordinates_loss"]) for m in train_steps(8, box_cells=3)[0]])
    assert np.all(np.isfinite(history)) and np.all(history[-1] < history[0])


def test_train_steps_with_a_3x3_box_head_lower_the_box_loss():
    history = np.array([(m["box_objectness_loss"], m["box_coordinates_loss"])
                        for m in train_steps(8, box_head_convs=1)[0]])
    assert np.all(np.isfinite(history)) and np.all(history[-1] < history[0])


def test_hardest_absent_by_hand():
    present = [[1.0, 0.0], [0.0, 1.0]]
    absent = [[0.6, 0.8], [-1.0, 0.0], [0.99, 0.141]]  # nearest one present by cosine 0.8, 0, 0.99
    anchors = np.array([present + absent, present + absent[::-1]], np.float32)[:, :, None]  # (2, 5, 1, 2)
    np.testing.assert_array_equal(train.hardest_absent(anchors, 2, 1), [[0, 1, 4], [0, 1, 2]])
    np.testing.assert_array_equal(train.hardest_absent(anchors, 2, 2), [[0, 1, 4, 2], [0, 1, 2, 4]])


def test_hard_absent_loss_is_the_loss_of_the_chosen_objects():
    """With each object's views normalised on their own, the objects' embeddings do not depend on
    which others share the batch: the loss over C + K' candidates is the plain loss over the C + K
    chosen."""
    hp, models, batch = setup(num_objects=2, absent_queries_per_scene=1, absent_candidates=2,
                              embedding_batch_norm="object", **WEIGHTS)  # the batch's 4 objects: 2 + 2 candidates
    params, nt_params = model_state(models)
    hard, (_, metrics) = jitted(train.loss_fn)(params, nt_params, batch, models, hp)
    anchors, _ = train.embed_views(models, params[0], nt_params[0], batch["anchors"], batch["anchor_backgrounds"],
                                   True, per_object=True)
    order = train.hardest_absent(anchors, 2, 1)
    chosen = {k: v if k == "scene" else train.take_objects(v, order) for k, v in batch.items()}
    plain, _ = jitted(train.loss_fn)(params, nt_params, chosen, models, dataclasses.replace(hp, absent_candidates=0))
    assert float(hard) == pytest.approx(float(plain), rel=1e-5)
    assert metrics["classifier_loss"] > 0


def test_train_steps_lower_every_loss_term_on_a_fixed_batch(twelve_steps):
    history, _, _ = twelve_steps
    first, last = history[0], history[-1]
    assert last["loss"] < 0.9 * first["loss"]
    for term in ("contrastive_loss", "classifier_loss", "box_objectness_loss", "box_coordinates_loss"):
        assert last[term] < first[term], term
    assert first["grad_norm"] > 0


def test_stop_scene_gradient_keeps_the_scene_loss_off_the_embeddings():
    hp, models, batch = setup(stop_scene_gradient=True, contrastive_loss_weight=0.0)
    params, nt_params = model_state(models)
    grads, _ = jitted(jax.grad(train.loss_fn, has_aux=True))(params, nt_params, batch, models, hp)
    assert all(float(np.abs(g).max()) == 0 for g in grads[0])  # embedding's
    assert any(float(np.abs(g).max()) > 0 for g in grads[1])  # scene's


def test_per_object_batch_norm_keeps_objects_apart_in_training_only():
    """The original's embedding batch norm: each object's N views normalised on their own."""
    from models import embed_views

    _, models, batch = setup()
    params, nt_params = model_state(models)
    views, backgrounds = batch["anchors"], batch["anchor_backgrounds"]  # (B, Q, N, h, w, 4), (B, Q, N, 3)
    other = views.copy()
    other[0, 1] = np.roll(other[0, 1], 7, axis=-2)  # object 1 of scene 0 looks different

    def embeddings(v, training, per_object):
        e, _ = jitted_embed(params[0], nt_params[0], v, backgrounds, training, per_object)
        return np.asarray(e)

    jitted_embed = jax.jit(functools.partial(embed_views, models), static_argnums=(4, 5))
    alone, alone_other = embeddings(views, True, True), embeddings(other, True, True)
    np.testing.assert_allclose(alone[0, 0], alone_other[0, 0], rtol=1e-5, atol=1e-6)  # object 0 untouched
    assert not np.allclose(embeddings(views, True, False)[0, 0], embeddings(other, True, False)[0, 0])
    np.testing.assert_allclose(embeddings(views, False, True), embeddings(views, False, False), rtol=1e-5, atol=1e-6)
