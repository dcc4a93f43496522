"""film-giou-head2-iou: train.py's defaults; boxes scored box_score objectness.

    python sweep.py run film-giou-head2-iou --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-giou-head2-iou --run-dir runs/film-giou-head2-iou

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {}

INFERENCE = {
    'box_score': 'objectness',
}
