"""film-giou-head3-iou: box_head_convs 3; boxes scored box_score objectness.

    python sweep.py run film-giou-head3-iou --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-giou-head3-iou --run-dir runs/film-giou-head3-iou

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_head_convs': 3,
}

INFERENCE = {
    'box_score': 'objectness',
}
