"""film-ignore05: box_ignore_iou 0.5, box_coordinates yolo, box_head_convs 0.

    python sweep.py run film-ignore05 --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-ignore05 --run-dir runs/film-ignore05

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_ignore_iou': 0.5,
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
}
