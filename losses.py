"""The losses (contrastive, focal, boxes), as pure jax functions of arrays."""

import jax.numpy as jnp
import optax


def l2_normalise(x, axis=-1):
    return x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), 1e-12))


def mean_embedding(embeddings):
    """(..., N, E) per-view embeddings -> (..., E): their mean, re-L2-normalised."""
    return l2_normalise(jnp.mean(embeddings, axis=-2))


def contrastive_loss(anchors, positives, temperature=1.0):
    """Softmax cross-entropy on the main diagonal of the anchor-vs-positive similarities.

    anchors, positives: (C, N, E) L2-normalised view embeddings of the same C objects, in the
    same order. Object c's mean anchor embedding must pick out object c's mean positive
    embedding among the C. Returns a scalar.
    """
    similarities = mean_embedding(anchors) @ mean_embedding(positives).T / temperature  # (C, C)
    labels = jnp.arange(similarities.shape[0])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(similarities, labels))


def focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss (Lin et al. 2017), mean over cells; logits and {0,1} targets alike shaped."""
    return jnp.mean(optax.sigmoid_focal_loss(logits, targets.astype(logits.dtype), alpha=alpha, gamma=gamma))


def box_loss(outputs, targets, alpha=0.25, gamma=2.0):
    """YOLO-style box losses of (..., A, 5) raw outputs against boxes.cell_targets -> (objectness,
    coordinates), each a sum over the responsible (cell, prior)s' share, divided by their number.

    Objectness: focal loss over every (cell, prior), normalised by the number of responsible ones
    as RetinaNet does (a mean over all would drown the few positives: ~1 in 1000 here).
    Coordinates, only where responsible: binary cross-entropy of sigmoid(t_x), sigmoid(t_y)
    against the centre's offset in its cell, squared error of t_w, t_h against log(size / prior).
    """
    responsible = targets[..., 0]
    count = jnp.maximum(jnp.sum(responsible), 1.0)
    objectness = jnp.sum(optax.sigmoid_focal_loss(outputs[..., 0], responsible, alpha=alpha, gamma=gamma)) / count
    xy = jnp.sum(optax.sigmoid_binary_cross_entropy(outputs[..., 1:3], targets[..., 1:3]), axis=-1)
    wh = jnp.sum(jnp.square(outputs[..., 3:5] - targets[..., 3:5]), axis=-1)
    return objectness, jnp.sum((xy + wh) * responsible) / count
