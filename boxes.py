"""Boxes the YOLO way, as pure functions: IoU, k-means priors, decoding, NMS.

Boxes are pixel (x0, y0, x1, y1) with exclusive ends, as the renderer stores them; -1 rows are
instances that are not visible. On the G x G grid of stride s = scene / G, each cell holds A
priors (widths and heights from k-means on the training boxes, IoU distance, as YOLOv2) and
predicts per prior (t_o, t_x, t_y, t_w, t_h):

    score = sigmoid(t_o),  centre = ((o(t_x) + col) * s, (o(t_y) + row) * s),
    width = p_w * exp(t_w),  height = p_h * exp(t_h).

The cell that holds an instance's centre, with the prior whose shape overlaps it most, is
responsible for it, and o = sigmoid places the centre inside that cell (YOLOv2); with `cells`
3, the nearer horizontal and the nearer vertical neighbour are responsible too, and o = 2
sigmoid - 1/2 reaches half a cell beyond each side (YOLOv5), so that a neighbour's box can
still centre on the instance. All numpy, so that a runtime without JAX decodes as training does;
`box_iou`, `shape_iou` and `decode` take xp=jax.numpy too, for the cell targets the train step
assigns (losses.py).
"""

import numpy as np


def visible(boxes):
    """(I, 4) boxes with -1 rows for hidden instances -> (n, 4) the visible ones."""
    return boxes[boxes[:, 0] >= 0]


def box_iou(a, b, xp=np):
    """(n, 4) and (m, 4) boxes -> (n, m) intersection over union (float64 in numpy, jax's default float in jax)."""
    a, b = xp.asarray(a, float)[:, None], xp.asarray(b, float)[None]
    w = xp.clip(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), 0, None)
    h = xp.clip(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / xp.maximum(area(a) + area(b) - inter, 1e-12)


def instances_found(boxes, truths, iou_threshold=0.5):
    """(n, 4) detections, (m, 4) true boxes -> how many of the true boxes some detection is the
    best match of at IoU >= iou_threshold."""
    if not len(boxes) or not len(truths):
        return 0
    iou = box_iou(np.asarray(boxes, float), np.asarray(truths, float))
    return len(set(np.argmax(iou, 1)[iou.max(1) >= iou_threshold].tolist()))


def shape_iou(wh, priors, xp=np):
    """(n, 2) and (A, 2) widths and heights, centred on each other -> (n, A) IoU."""
    inter = xp.minimum(wh[:, None, 0], priors[None, :, 0]) * xp.minimum(wh[:, None, 1], priors[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + priors[None, :, 0] * priors[None, :, 1] - inter
    return inter / xp.maximum(union, 1e-12)


def kmeans_priors(wh, k, seed=0, iterations=100):
    """k prior (width, height) from (n, 2) box shapes, k-means with distance 1 - IoU; sorted by area."""
    wh = np.asarray(wh, np.float64)
    if len(wh) < k:
        raise ValueError(f"k-means for {k} priors needs at least {k} boxes, got {len(wh)}")
    centres = wh[np.random.default_rng(seed).choice(len(wh), k, replace=False)]
    for _ in range(iterations):
        nearest = np.argmax(shape_iou(wh, centres), axis=1)
        # the median keeps a few huge boxes from dragging a prior away (as YOLOv2's implementations do)
        new = np.array([np.median(wh[nearest == j], axis=0) if np.any(nearest == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return centres[np.argsort(centres.prod(axis=1))]


def cell_offset(o, cells):
    """sigmoid(t_x) or sigmoid(t_y) -> the centre's offset from its cell's corner, in cells: o itself,
    in (0, 1), with 1 responsible cell; 2 o - 1/2, in (-1/2, 3/2), with 3."""
    return o if cells == 1 else 2 * o - 0.5


def decode(outputs, priors, stride, xp=np, cells=1):
    """(G, G, A, 5) raw outputs -> ((G*G*A, 4) pixel boxes, (G*G*A,) each box's objectness), cells
    row-major, priors last."""
    outputs, priors = xp.asarray(outputs, float), xp.asarray(priors, float)
    g = outputs.shape[0]
    sigmoid = lambda x: 1 / (1 + xp.exp(-x))  # noqa: E731
    cols, rows = xp.meshgrid(xp.arange(g), xp.arange(g))  # (G, G) each
    cx = (cell_offset(sigmoid(outputs[..., 1]), cells) + cols[..., None]) * stride  # (G, G, A)
    cy = (cell_offset(sigmoid(outputs[..., 2]), cells) + rows[..., None]) * stride
    w = priors[:, 0] * xp.exp(xp.clip(outputs[..., 3], -10, 10))
    h = priors[:, 1] * xp.exp(xp.clip(outputs[..., 4], -10, 10))
    boxes = xp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    return boxes.reshape(-1, 4), sigmoid(outputs[..., 0]).reshape(-1)


def nms(boxes, scores, iou_threshold):
    """Greedy non-max suppression -> indices kept, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[box_iou(boxes[best:best + 1], boxes[order])[0] <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def select(boxes, scores, threshold, iou_threshold, max_candidates=200, max_detections=100):
    """(n, 4) candidate boxes and (n,) scores of one query -> the detections: the best
    max_candidates over the threshold, then NMS."""
    over = np.nonzero(scores >= threshold)[0]
    over = over[np.argsort(-scores[over], kind="stable")[:max_candidates]]
    keep = over[nms(boxes[over], scores[over], iou_threshold)][:max_detections]
    return boxes[keep], scores[keep]
