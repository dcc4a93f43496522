"""film-zoomout: box_coordinates yolo, box_head_convs 0, scene_zoom 1.7, scene_zoom_direction out.

    python sweep.py run film-zoomout --seeds 0 1       # ~15 min a seed, 2 cores (3000 steps, data/small)
    python train.py --config film-zoomout --run-dir runs/film-zoomout

Result: its rows in experiments/log.md (mean and spread over the seeds), as the sweep ran it.
"""

OVERRIDES = {
    'box_coordinates': 'yolo',
    'box_head_convs': 0,
    'scene_zoom': 1.7,
    'scene_zoom_direction': 'out',
}
