"""film-tn: box_coordinates yolo, box_head_convs 0, dense_initializer truncated_normal.

    python sweep.py run film-tn --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-tn --run-dir runs/film-tn

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'dense_initializer': 'truncated_normal',
}
