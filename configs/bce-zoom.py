"""bce-zoom: box_coordinates yolo, box_head_convs 0, matching add, crop_references 0.0, scene_zoom
1.7.

    python sweep.py run bce-zoom --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config bce-zoom --run-dir runs/bce-zoom

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'matching': 'add',
    'crop_references': 0.0,
    'scene_zoom': 1.7,
}
