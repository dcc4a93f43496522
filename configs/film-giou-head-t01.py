"""film-giou-head-t01: box_head_convs 1, temperature 0.1.

    python sweep.py run film-giou-head-t01 --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-giou-head-t01 --run-dir runs/film-giou-head-t01

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_head_convs': 1,
    'temperature': 0.1,
}
