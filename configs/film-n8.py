"""film-n8: num_views 8, box_coordinates yolo, box_head_convs 0.

    python sweep.py run film-n8 --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-n8 --run-dir runs/film-n8

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'num_views': 8,
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
}
