"""lr-original: learning_rate 0.0001, schedule constant, warmup_steps 0, box_coordinates yolo,
box_head_convs 0, matching add.

    python sweep.py run lr-original --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config lr-original --run-dir runs/lr-original

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'learning_rate': 0.0001,
    'schedule': 'constant',
    'warmup_steps': 0,
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'matching': 'add',
}
