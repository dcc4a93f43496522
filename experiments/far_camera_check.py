"""The demo's "far camera" box on the test_shift scenes the demo offers as examples
(app.EXAMPLE_SCENES): each scene searched for each of its objects (rendered views as references)
through app.answer, the page's own action, at the run's threshold, without and with the box.

    python -m experiments.far_camera_check     # ~1 min on 2 cores
"""

import argparse

import numpy as np

import app
from boxes import instances_found, visible
from data import Split
from detect import Detector
from models import enable_compilation_cache
from util import exits_in_one_line, non_negative_int, positive_int


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained")
    parser.add_argument("--data-dir", default="data/small")
    parser.add_argument("--scenes", type=non_negative_int, nargs="+", default=list(app.EXAMPLE_SCENES),
                        help="test_shift scenes searched")
    parser.add_argument("--views", type=positive_int, default=4, help="reference views per object")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    with exits_in_one_line():
        split = Split(args.data_dir, "test_shift")
        detector = Detector(args.run_dir)
    found_by = {}
    for far in (False, True):
        hits = dets = true = 0
        for index in [i for i in args.scenes if i < split.num_scenes]:
            scene = split.scene(index)
            for obj_id, boxes in zip(scene["obj_ids"], scene["boxes"]):
                _, _, found = app.answer(detector, scene["rgb"], list(split.views(obj_id)[:args.views]), None, far)
                b, t = np.array([d["box"] for d in found["detections"]]).reshape(-1, 4), visible(boxes)
                dets, true, hits = dets + len(b), true + len(t), hits + instances_found(b, t)
        found_by[far] = hits
        print(f"far camera {'on' if far else 'off'}: {dets} detections, {hits} of {true} true instances found "
              "(IoU >= 0.5)")
    return found_by


if __name__ == "__main__":
    main()
