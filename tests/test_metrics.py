import numpy as np
import pytest

from metrics import average_precision, pixel_metrics, precision_recall_curve, precision_recall_f1, recall_at_1, roc_auc

SCORES = np.array([0.9, 0.8, 0.7, 0.6])
LABELS = np.array([1, 0, 1, 0])


def test_average_precision_by_hand():
    assert average_precision(SCORES, LABELS) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision(LABELS * 0.9, LABELS) == 1.0  # perfect
    labels = np.zeros((10, 10))
    labels[2, :3] = 1
    assert average_precision(np.full((10, 10), 0.3), labels) == pytest.approx(0.03)  # constant: the positive rate


def test_roc_auc_by_hand():
    assert roc_auc(SCORES, LABELS) == pytest.approx(3 / 4)
    assert roc_auc(LABELS.astype(float), LABELS) == 1.0
    assert roc_auc(np.full(4, 0.5), LABELS) == 0.5


def test_precision_recall_f1_by_hand():
    assert precision_recall_f1(SCORES, LABELS, 0.5) == pytest.approx((0.5, 1.0, 2 / 3))
    assert precision_recall_f1(SCORES, LABELS, 0.75) == pytest.approx((0.5, 0.5, 0.5))
    assert precision_recall_f1(SCORES, LABELS, 0.95) == (0.0, 0.0, 0.0)


def test_pixel_metrics_has_every_field():
    figures = pixel_metrics(SCORES, LABELS)
    assert figures["positive_rate"] == 0.5
    assert {"average_precision", "roc_auc", "precision@0.25", "recall@0.5", "f1@0.75"} <= set(figures)


def test_precision_recall_curve_by_hand():
    precision, recall = precision_recall_curve(SCORES, LABELS)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(recall, [1 / 2, 1 / 2, 1, 1])
    precision, recall = precision_recall_curve(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 1]))  # a tie: one point
    np.testing.assert_allclose(precision, [1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 2, 1])


def test_recall_at_1_by_hand():
    keys = np.eye(3)
    assert recall_at_1(keys, keys) == 1.0
    assert recall_at_1(keys[[1, 0, 2]], keys) == pytest.approx(1 / 3)
