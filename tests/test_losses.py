import jax.numpy as jnp
import numpy as np

from losses import contrastive_loss, focal_loss, mean_embedding


def test_mean_embedding_is_renormalised():
    np.testing.assert_allclose(mean_embedding(jnp.array([[1.0, 0.0], [0.0, 1.0]])), [0.5 ** 0.5, 0.5 ** 0.5], rtol=1e-6)


def test_contrastive_by_hand():
    views = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # (C=2, N=1, E=2): similarities = identity
    np.testing.assert_allclose(contrastive_loss(views, views), np.log(1 + np.exp(-1)), rtol=1e-6)
    np.testing.assert_allclose(contrastive_loss(views, views, temperature=0.5), np.log(1 + np.exp(-2)), rtol=1e-6)
    swapped = views[::-1]  # each anchor most similar to the wrong positive
    np.testing.assert_allclose(contrastive_loss(views, swapped), np.log(1 + np.exp(1)), rtol=1e-6)


def test_focal_by_hand():
    # logit 0: p = 0.5, cross-entropy log 2; alpha 0.25, gamma 2
    positive, negative = 0.25 * 0.25 * np.log(2), 0.75 * 0.25 * np.log(2)
    np.testing.assert_allclose(focal_loss(jnp.zeros(2), jnp.array([1, 0])), (positive + negative) / 2, rtol=1e-6)
    # a confident right answer costs far less than a confident wrong one
    assert focal_loss(jnp.array([5.0]), jnp.array([1])) < 1e-4 < focal_loss(jnp.array([-5.0]), jnp.array([1]))
