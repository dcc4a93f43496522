"""film-a6: box_coordinates yolo, box_head_convs 0, num_priors 6.

    python sweep.py run film-a6 --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-a6 --run-dir runs/film-a6

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'num_priors': 6,
}
