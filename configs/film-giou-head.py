"""film-giou-head: box_head_convs 1.

    python sweep.py run film-giou-head --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-giou-head --run-dir runs/film-giou-head

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_head_convs': 1,
}
