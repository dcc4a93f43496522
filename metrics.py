"""Pixel-level (per grid cell) detection metrics, as pure numpy functions of scores and labels."""

import numpy as np

THRESHOLDS = (0.25, 0.5, 0.75)


def precision_recall_f1(scores, labels, threshold):
    """At one threshold on P(object); scores in [0, 1] and {0,1} labels of any (equal) shape."""
    predicted = scores.ravel() >= threshold
    actual = labels.ravel().astype(bool)
    tp = np.sum(predicted & actual)
    precision = tp / max(np.sum(predicted), 1)
    recall = tp / max(np.sum(actual), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return float(precision), float(recall), float(f1)


def average_precision(scores, labels):
    """Area under the precision-recall curve, all-point (each positive's precision, averaged).

    Tied scores are ranked as one block, so a constant score gives the positive rate.
    """
    scores, actual = scores.ravel(), labels.ravel().astype(bool)
    if not actual.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, actual = scores[order], actual[order]
    tp = np.cumsum(actual)
    # precision at the end of each block of tied scores, given to every positive in the block
    block_end = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    block_of = np.searchsorted(block_end, np.arange(len(scores)))
    precision = tp[block_end] / (block_end + 1)
    return float(np.sum(precision[block_of][actual]) / actual.sum())


def roc_auc(scores, labels):
    """P(score of a random positive > score of a random negative), ties counting half."""
    scores, actual = scores.ravel(), labels.ravel().astype(bool)
    n_pos, n_neg = actual.sum(), (~actual).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average rank (1-based) within each block of ties
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return float((ranks[actual].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pixel_metrics(scores, labels):
    """All the per-cell figures reported for a split: a flat dict of floats."""
    out = {"average_precision": average_precision(scores, labels), "roc_auc": roc_auc(scores, labels),
           "positive_rate": float(np.mean(labels))}
    for t in THRESHOLDS:
        p, r, f = precision_recall_f1(scores, labels, t)
        out.update({f"precision@{t}": p, f"recall@{t}": r, f"f1@{t}": f})
    return out
