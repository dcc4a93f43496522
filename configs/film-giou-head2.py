"""film-giou-head2: train.py's defaults.

    python sweep.py run film-giou-head2 --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-giou-head2 --run-dir runs/film-giou-head2

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {}
