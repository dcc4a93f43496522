"""bce-crops: box_coordinates yolo, box_head_convs 0, matching add.

    python sweep.py run bce-crops --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config bce-crops --run-dir runs/bce-crops

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'matching': 'add',
}
