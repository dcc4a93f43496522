"""stopgrad: box_coordinates yolo, box_head_convs 0, focal_alpha 0.25, focal_gamma 2.0, matching
add, crop_references 0.0, stop_scene_gradient True.

    python sweep.py run stopgrad --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config stopgrad --run-dir runs/stopgrad

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'focal_alpha': 0.25,
    'focal_gamma': 2.0,
    'matching': 'add',
    'crop_references': 0.0,
    'stop_scene_gradient': True,
}
