"""bce: box_coordinates yolo, box_head_convs 0, matching add, crop_references 0.0.

    python sweep.py run bce --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config bce --run-dir runs/bce

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'matching': 'add',
    'crop_references': 0.0,
}
