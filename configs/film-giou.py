"""film-giou: box_head_convs 0.

    python sweep.py run film-giou --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-giou --run-dir runs/film-giou

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_head_convs': 0,
}
