"""Detection metrics as pure numpy functions: per grid cell (heatmaps) and per box (VOC / COCO AP)."""

import numpy as np

from boxes import box_iou

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


def precision_recall_curve(scores, labels):
    """(precision, recall) after each block of tied scores, highest score first.

    A block of ties is ranked as one, so a constant score gives one point: the positive rate.
    """
    scores, actual = scores.ravel(), labels.ravel().astype(bool)
    order = np.argsort(-scores, kind="stable")
    scores, actual = scores[order], actual[order]
    tp = np.cumsum(actual)
    block_end = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    return tp[block_end] / (block_end + 1), tp[block_end] / max(actual.sum(), 1)


def average_precision(scores, labels):
    """Area under the precision-recall curve, all-point: sum of precision x recall step."""
    if not labels.any():
        return float("nan")
    precision, recall = precision_recall_curve(scores, labels)
    return float(np.sum(precision * np.diff(recall, prepend=0.0)))


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


def recall_at_1(queries, keys):
    """Fraction of rows i of (K, E) queries whose most similar (dot product) row of keys is row i."""
    return float(np.mean(np.argmax(queries @ keys.T, axis=1) == np.arange(len(queries))))


# ---------------------------------------------------------------------------------------------
# boxes (VOC / COCO style)

COCO_IOUS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))


def match_detections(boxes, scores, true_boxes, iou_threshold):
    """(n,) bool: is each detection a true positive? Best score first, each takes the unmatched true
    box it overlaps most, if that IoU reaches the threshold (VOC's rule)."""
    hit = np.zeros(len(boxes), dtype=bool)
    if not len(boxes) or not len(true_boxes):
        return hit
    iou = box_iou(boxes, true_boxes)  # (n, m)
    taken = np.zeros(len(true_boxes), dtype=bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        overlaps = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(overlaps))
        if overlaps[j] >= iou_threshold:
            hit[i], taken[j] = True, True
    return hit


def detection_average_precision(scores, hits, num_true):
    """All-point interpolated AP of pooled detections: precision made non-increasing in recall,
    summed over the recall steps (VOC 2010+; COCO samples the same curve at 101 points)."""
    if num_true == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.cumsum(np.asarray(hits)[order])
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / num_true
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(tp) else precision
    return float(np.sum(envelope * np.diff(recall, prepend=0.0)))


def box_metrics(queries, iou_thresholds=COCO_IOUS):
    """queries: (boxes, scores, true_boxes) per query, detections of every query pooled.
    -> AP at each IoU threshold, AP50 and AP[.50:.95]."""
    scores = np.concatenate([q[1] for q in queries]) if queries else np.zeros(0)
    num_true = sum(len(q[2]) for q in queries)
    aps = {}
    for t in iou_thresholds:
        hits = np.concatenate([match_detections(b, s, tb, t) for b, s, tb in queries]) if queries else scores
        aps[float(t)] = detection_average_precision(scores, hits, num_true)
    return {"ap50": aps[0.5], "ap50_95": float(np.mean(list(aps.values()))), "num_true_boxes": int(num_true),
            "num_detections": int(len(scores))}
