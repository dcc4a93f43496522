"""The loss, as pure jax functions of arrays: contrastive (embeddings), sigmoid focal (per-cell
classifier; by default gamma 0, i.e. binary cross-entropy) and the box head's against its YOLO
cell targets (`cell_targets`), summed by `total_loss` with the run's weights.

One name per quantity from flag to logged metric: --contrastive-loss-weight scales
`contrastive_loss`, --classifier-loss-weight `classifier_loss`, --box-loss-weight `box_loss`
(= `box_objectness_loss` + `box_coordinates_loss`, logged apart too).
"""

import functools

import jax
import jax.numpy as jnp
import optax

from boxes import box_iou, cell_offset, decode, shape_iou
from models import mean_embedding


# ---------------------------------------------------------------------------------------------
# the box head's targets (boxes.py's YOLO assignment, in jax: they run inside the train step)


def cell_targets(boxes, priors, grid, stride, cells=1):
    """(I, 4) pixel boxes (-1 rows hidden) -> (G, G, A, 5) targets (objectness, the centre's x, y
    offset from the cell's corner in cells, log w / p_w, log h / p_h), objectness 1 only at the
    responsible (row, col, prior)s: the centre's cell, and with cells 3 its nearer horizontal and
    vertical neighbours (inside the grid), where another instance's centre cell does not hold them."""
    boxes = boxes.astype(jnp.float32)
    visible = boxes[:, 0] >= 0
    wh = jnp.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)  # (I, 2)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride  # (I, 2) in cells
    cell = jnp.clip(jnp.floor(centre).astype(jnp.int32), 0, grid - 1)
    prior = jnp.argmax(shape_iou(wh, priors, jnp), axis=1)  # (I,)
    size = jnp.log(wh / priors[prior])

    # each instance written at its (I, 2) (col, row) cell in `at`; hidden instances and cells off
    # the grid are sent out of bounds, which scatter drops
    def assign(targets, at):
        inside = visible & jnp.all((at >= 0) & (at < grid), axis=1)
        col, row = jnp.where(inside[:, None], at, grid).T
        values = jnp.concatenate([jnp.ones_like(wh[:, :1]), centre - at, size], axis=1)
        return targets.at[row, col, prior].set(values, mode="drop")

    targets = jnp.zeros((grid, grid, len(priors), 5))
    if cells == 3:  # the neighbours first, so that a cell holding one instance's centre keeps it
        step = jnp.where(centre - cell < 0.5, -1, 1)  # (I, 2)
        targets = assign(assign(targets, cell + step * jnp.array([1, 0])), cell + step * jnp.array([0, 1]))
    return assign(targets, cell)


def near_misses(outputs, boxes, priors, stride, iou_threshold, cells=1):
    """(G, G, A, 5) raw outputs of one query and its (I, 4) pixel boxes (-1 rows hidden) -> (G, G, A)
    {0, 1}: the predictions whose box overlaps a visible instance by more than iou_threshold. YOLOv3
    leaves these out of the objectness loss unless responsible: a good box one cell off is no
    background, and teaching it so fights the responsible prediction."""
    predicted, _ = decode(outputs, priors, stride, xp=jnp, cells=cells)
    overlap = jnp.max(box_iou(predicted, boxes, xp=jnp), axis=1, initial=0.0)  # hidden rows have no area
    return (overlap > iou_threshold).astype(jnp.float32).reshape(outputs.shape[:-1])


def target_iou(outputs, targets, priors, stride, generalized=False, cells=1):
    """(..., A, 5) raw outputs and cell_targets alike shaped -> (..., A): the IoU of each prediction's
    box with its target's, both placed in the same cell (meaningful where the target is responsible).
    generalized: GIoU (Rezatofighi et al. 2019), the IoU less the share of the smallest box enclosing
    both that neither covers, in (-1, 1]: unlike the IoU it still says which way to move a box that
    misses its target."""
    def corners(xy, twh):  # in cells: the centre's offset in the cell, the size over the stride
        wh = priors * jnp.exp(jnp.clip(twh, -10, 10)) / stride
        return xy - wh / 2, xy + wh / 2
    p0, p1 = corners(cell_offset(jax.nn.sigmoid(outputs[..., 1:3]), cells), outputs[..., 3:5])
    t0, t1 = corners(targets[..., 1:3], targets[..., 3:5])
    inter = jnp.prod(jnp.clip(jnp.minimum(p1, t1) - jnp.maximum(p0, t0), 0, None), axis=-1)
    union = jnp.prod(p1 - p0, axis=-1) + jnp.prod(t1 - t0, axis=-1) - inter
    iou = inter / jnp.maximum(union, 1e-12)
    if not generalized:
        return iou
    hull = jnp.prod(jnp.maximum(p1, t1) - jnp.minimum(p0, t0), axis=-1)
    return iou - (hull - union) / jnp.maximum(hull, 1e-12)


# ---------------------------------------------------------------------------------------------
# the losses


def contrastive_loss(anchors, positives, temperature=1.0, reduction="mean"):
    """Softmax cross-entropy on the main diagonal of the anchor-vs-positive similarities.

    anchors, positives: (C, N, E) L2-normalised view embeddings of the same C objects, in the
    same order. Object c's mean anchor embedding must pick out object c's mean positive
    embedding among the C. Returns a scalar: the mean over the C objects, or their sum
    (reduction "sum", the original's -sum(diag(log_softmax(sims)))).
    """
    similarities = mean_embedding(anchors) @ mean_embedding(positives).T / temperature  # (C, C)
    labels = jnp.arange(similarities.shape[0])
    per_object = optax.softmax_cross_entropy_with_integer_labels(similarities, labels)
    return jnp.sum(per_object) if reduction == "sum" else jnp.mean(per_object)


def focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss (Lin et al. 2017), mean over cells; logits and {0,1} targets alike shaped."""
    return jnp.mean(optax.sigmoid_focal_loss(logits, targets.astype(logits.dtype), alpha=alpha, gamma=gamma))


def box_loss(outputs, targets, alpha=0.25, gamma=2.0, ignore=None, quality=None, giou=None, cells=1):
    """YOLO-style box losses of (..., A, 5) raw outputs against cell_targets -> (objectness,
    coordinates), each a sum over the responsible (cell, prior)s' share, divided by their number.

    Objectness: focal loss over every (cell, prior) but the ignored ones (ignore: (..., A) {0, 1},
    near_misses; a responsible one always counts), normalised by the number of responsible
    ones as RetinaNet does (a mean over all would drown the few positives: ~1 in 1000 here).
    quality: (..., A) in [0, 1], the responsible predictions' target instead of 1 (YOLOv2 uses
    the IoU of the predicted box, target_iou), as the varifocal loss (Zhang et al. 2021)
    takes it: binary cross-entropy against it, weighted by it; the negatives' focal term is
    unchanged (its weight 1 - alpha = 0.75 is the varifocal loss's own).
    Coordinates, only where responsible: binary cross-entropy of sigmoid(t_x), sigmoid(t_y)
    against the centre's offset in its cell (through boxes.cell_offset's stretch, with cells
    3), squared error of t_w, t_h against log(size / prior);
    or, given giou ((..., A), target_iou(generalized=True) of the outputs), 1 - giou, which
    weighs each error by what it costs the box's overlap (a small box's misplacement more).
    """
    responsible = targets[..., 0]
    count = jnp.maximum(jnp.sum(responsible), 1.0)
    counted = 1.0 if ignore is None else jnp.maximum(1.0 - ignore, responsible)
    per_prior = optax.sigmoid_focal_loss(outputs[..., 0], responsible, alpha=alpha, gamma=gamma) * counted
    if quality is not None:
        positive = quality * optax.sigmoid_binary_cross_entropy(outputs[..., 0], quality)
        per_prior = jnp.where(responsible > 0, positive, per_prior)
    objectness = jnp.sum(per_prior) / count
    if giou is None:
        offset = targets[..., 1:3] if cells == 1 else (targets[..., 1:3] + 0.5) / 2  # the sigmoid's target
        xy = jnp.sum(optax.sigmoid_binary_cross_entropy(outputs[..., 1:3], offset), axis=-1)
        wh = jnp.sum(jnp.square(outputs[..., 3:5] - targets[..., 3:5]), axis=-1)
        per_prior = xy + wh
    else:
        per_prior = 1.0 - giou
    return objectness, jnp.sum(per_prior * responsible) / count


def box_targets(boxes, config):
    """(B, Q, I, 4) pixel boxes (-1 rows hidden) -> (B, Q, G, G, A, 5) cell targets for the box head."""
    targets = functools.partial(cell_targets, priors=jnp.asarray(config.priors), grid=config.grid_size,
                                stride=config.stride, cells=config.box_cells)
    return jax.vmap(jax.vmap(targets))(boxes)


def box_near_misses(box_outputs, boxes, config, iou_threshold):
    """(B, Q, G, G, A, 5) raw outputs and (B, Q, I, 4) pixel boxes -> (B, Q, G, G, A) near_misses,
    a constant of the loss (no gradient flows through which predictions are ignored)."""
    near = functools.partial(near_misses, priors=jnp.asarray(config.priors), stride=config.stride,
                             iou_threshold=iou_threshold, cells=config.box_cells)
    return jax.vmap(jax.vmap(near))(jax.lax.stop_gradient(box_outputs), boxes)


def box_target_iou(box_outputs, targets, config, generalized=False):
    """(B, Q, G, G, A, 5) raw outputs and box_targets -> (B, Q, G, G, A) target_iou."""
    return target_iou(box_outputs, targets, jnp.asarray(config.priors), config.stride, generalized, config.box_cells)


def total_loss(anchors, positives, logits, box_outputs, masks, boxes, hp, config):
    """The training loss of a batch of episodes -> (scalar loss, {metric name: scalar}).

    anchors, positives: (B, Q, N, E) view embeddings; logits: (B, Q, G, G); box_outputs:
    (B, Q, G, G, A, 5) or None without a box head; masks: (B, Q, G, G) {0,1} targets; boxes:
    (B, Q, I, 4) pixel boxes. hp: the run's Hyperparameters (train.py), its loss weights,
    temperature and the classifier's focal alpha / gamma (the box objectness keeps RetinaNet's
    0.25 / 2, so that the classifier's loss can be varied alone), box ignore IoU and objectness
    target, box coordinates loss; config: the ModelConfig.
    """
    contrastive = jnp.mean(jax.vmap(functools.partial(contrastive_loss, temperature=hp.temperature,
                                                      reduction=hp.contrastive_reduction))(anchors, positives))
    classifier = focal_loss(logits, masks, hp.focal_alpha, hp.focal_gamma)
    loss = hp.contrastive_loss_weight * contrastive + hp.classifier_loss_weight * classifier
    metrics = {"contrastive_loss": contrastive, "classifier_loss": classifier}
    if box_outputs is not None:
        ignore = box_near_misses(box_outputs, boxes, config, hp.box_ignore_iou) if hp.box_ignore_iou else None
        targets = box_targets(boxes, config)
        # a constant of the objectness: it does not pull the box towards or away from its target
        quality = (box_target_iou(jax.lax.stop_gradient(box_outputs), targets, config)
                   if hp.box_objectness == "iou" else None)
        giou = box_target_iou(box_outputs, targets, config, generalized=True) if hp.box_coordinates == "giou" else None
        objectness, coordinates = box_loss(box_outputs, targets, ignore=ignore, quality=quality, giou=giou,
                                           cells=config.box_cells)
        loss += hp.box_loss_weight * (objectness + coordinates)
        metrics.update(box_loss=objectness + coordinates, box_objectness_loss=objectness,
                       box_coordinates_loss=coordinates)
    return loss, {"loss": loss, **metrics}
