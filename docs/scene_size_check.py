# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/scene_size_check.py (~1 min on 2 cores).
"""A test scene rendered at 320 and at 640 pixels (same seed: same objects, same camera), searched
by the 320 model for each of its 16 objects with 4 rendered views each."""
import numpy as np
from boxes import box_iou, visible
from data import Split
from detect import Detector
from render import Renderer

split = Split("data/small", "test")
detector = Detector("pretrained")
renderer = Renderer()
for seed in range(3):
    ids = np.random.default_rng([seed, 99]).choice(split.object_ids, 16, replace=False)
    rows = []
    for size in (320, 640):
        rgb, labels = renderer.scene(ids, np.random.default_rng([seed, 7]), size, size // 8, 4)
        found = detector.find(rgb, {int(i): split.views(i)[:4] for i in ids})
        hits = dets = true = 0
        for k, i in enumerate(ids):
            t = visible(labels.boxes[k])
            b = found[int(i)]["boxes"]
            dets += len(b); true += len(t)
            if len(b) and len(t):
                iou = box_iou(b, t)
                hits += len(set(np.argmax(iou, 1)[iou.max(1) >= 0.5]))
        rows.append(f"{size}px: {dets} detections, {hits} of {true} true instances found (IoU >= 0.5)")
    print(f"scene seed {seed}: " + "; ".join(rows))
