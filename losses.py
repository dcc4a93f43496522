"""The two losses, as pure jax functions of arrays."""

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
