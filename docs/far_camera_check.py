# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/far_camera_check.py (~1 min on 2 cores).
"""The demo's "far camera" box on the test_shift scenes the demo offers as test-split examples
(app.EXAMPLE_SCENES): each scene searched for each of its 16 objects (4 rendered views each) through
app.answer, the page's own action, at the run's threshold, without and with the box."""
import numpy as np

import app
from boxes import box_iou, visible
from data import Split
from detect import Detector

split = Split("data/small", "test_shift")
detector = Detector("pretrained")
for far in (False, True):
    hits = dets = true = 0
    for index in app.EXAMPLE_SCENES:
        scene = split.scene(index)
        for obj_id, boxes in zip(scene["obj_ids"], scene["boxes"]):
            _, _, found = app.answer(detector, scene["rgb"], list(split.views(obj_id)[:4]), None, far)
            b, t = np.array([d["box"] for d in found["detections"]]).reshape(-1, 4), visible(boxes)
            dets += len(b); true += len(t)
            if len(b) and len(t):
                iou = box_iou(b, t)
                hits += len(set(np.argmax(iou, 1)[iou.max(1) >= 0.5]))
    print(f"far camera {'on' if far else 'off'}: {dets} detections, {hits} of {true} true instances found (IoU >= 0.5)")
