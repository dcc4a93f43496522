"""boxw4: box_loss_weight 4.0, box_coordinates yolo, box_head_convs 0, matching add.

    python sweep.py run boxw4 --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config boxw4 --run-dir runs/boxw4

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_loss_weight': 4.0,
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'matching': 'add',
}
