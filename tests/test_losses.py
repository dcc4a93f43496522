import jax.numpy as jnp
import numpy as np
import pytest

from losses import box_loss, contrastive_loss, focal_loss, mean_embedding


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


def test_box_loss_by_hand():
    targets = np.zeros((4, 4, 2, 5), np.float32)
    targets[1, 2, 0] = [1, 0.5, 0.5, 0.0, np.log(2.0)]  # one responsible (cell, prior)
    outputs = np.zeros_like(targets)
    objectness, coordinates = box_loss(outputs, targets, alpha=0.25, gamma=2.0)
    # sigmoid(0) = 0.5 everywhere: BCE log 2 for x and y; w exact, h off by log 2
    assert float(coordinates) == pytest.approx(2 * np.log(2) + np.log(2) ** 2, rel=1e-5)
    # focal at p = 0.5: alpha 0.25 x 0.25 x log 2 for the positive, 0.75 x 0.25 x log 2 for each of 31 negatives
    per = 0.25 * np.log(2)
    assert float(objectness) == pytest.approx((0.25 * per + 31 * 0.75 * per) / 1, rel=1e-5)
    outputs[0, 0, 1, 1:] = 5.0  # coordinates where no prior is responsible do not count
    assert float(box_loss(outputs, targets)[1]) == pytest.approx(float(coordinates), rel=1e-6)


def test_box_loss_ignores_near_misses_but_never_the_responsible_one():
    targets = np.zeros((4, 4, 2, 5), np.float32)
    targets[1, 2, 0, 0] = 1
    outputs = np.zeros_like(targets)
    ignore = np.zeros(targets.shape[:-1], np.float32)
    ignore[1, 2] = ignore[1, 3, 1] = 1  # the responsible (1, 2, 0), its neighbour prior and a near miss
    objectness = box_loss(outputs, targets, alpha=0.25, gamma=2.0, ignore=ignore)[0]
    per = 0.25 * np.log(2)  # focal at p = 0.5 as above: 31 negatives less the two ignored ones
    assert float(objectness) == pytest.approx(0.25 * per + 29 * 0.75 * per, rel=1e-5)


def test_box_loss_with_a_quality_target_by_hand():
    targets = np.zeros((4, 4, 2, 5), np.float32)
    targets[1, 2, 0, 0] = 1
    outputs = np.zeros_like(targets)
    quality = np.full(targets.shape[:-1], 0.9, np.float32)  # only the responsible one's is read
    quality[1, 2, 0] = 0.5
    objectness = box_loss(outputs, targets, alpha=0.25, gamma=2.0, quality=quality)[0]
    # the positive: 0.5 x BCE(p = 0.5, target 0.5) = 0.5 log 2; the 31 negatives' focal term as above
    assert float(objectness) == pytest.approx(0.5 * np.log(2) + 31 * 0.75 * 0.25 * np.log(2), rel=1e-5)
    outputs[1, 2, 0, 0] = 3.0  # the positive's term is smallest where p is the target
    assert float(box_loss(outputs, targets, quality=quality)[0]) > float(objectness)


def test_box_loss_with_giou_coordinates_by_hand():
    targets = np.zeros((4, 4, 2, 5), np.float32)
    targets[1, 2, 0] = [1, 0.5, 0.5, 0.0, np.log(2.0)]
    outputs = np.zeros_like(targets)
    giou = np.full(targets.shape[:-1], -0.5, np.float32)  # only the responsible one's is read
    giou[1, 2, 0] = 0.25
    objectness, coordinates = box_loss(outputs, targets, giou=giou)
    assert float(coordinates) == pytest.approx(1 - 0.25, rel=1e-6)
    assert float(objectness) == pytest.approx(float(box_loss(outputs, targets)[0]), rel=1e-6)


def test_box_loss_with_three_cells_by_hand():
    targets = np.zeros((4, 4, 2, 5), np.float32)
    targets[1, 2, 0] = [1, 1.0, -0.25, 0.0, 0.0]  # a neighbour's: the centre on its right edge, a quarter cell up
    outputs = np.zeros_like(targets)
    outputs[1, 2, 0, 1:3] = np.log(3.0)  # sigmoid 0.75: 2 x 0.75 - 0.5 = 1.0 cell, right for x
    # the sigmoid's targets are the offsets stretched back: (1.0 + 0.5) / 2 = 0.75, (-0.25 + 0.5) / 2 = 0.125
    bce = lambda p, t: -(t * np.log(p) + (1 - t) * np.log(1 - p))  # noqa: E731
    coordinates = box_loss(outputs, targets, cells=3)[1]
    assert float(coordinates) == pytest.approx(bce(0.75, 0.75) + bce(0.75, 0.125), rel=1e-5)


def test_contrastive_sum_is_the_originals_reduction():
    views = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]], [[0.6, 0.8]]])  # (C=3, N=1, E=2)
    mean = contrastive_loss(views, views)
    np.testing.assert_allclose(contrastive_loss(views, views, reduction="sum"), 3 * mean, rtol=1e-6)
