"""A test scene rendered at two sizes (same seed: same objects, same camera), searched by a run
for each of its objects (rendered views as references): does a scene larger than the model's
input, letterboxed down by detect.Detector, find as much?

    python -m experiments.scene_size_check     # ~1 min on 2 cores
"""

import argparse

import numpy as np

from boxes import instances_found, visible
from data import Split
from detect import Detector
from models import enable_compilation_cache
from render import Renderer
from util import exits_in_one_line, positive_int


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained")
    parser.add_argument("--data-dir", default="data/small")
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[320, 640], help="scene sizes rendered")
    parser.add_argument("--seeds", type=positive_int, default=3, help="scenes rendered (seeds 0, 1, ...)")
    parser.add_argument("--objects", type=positive_int, default=16, help="objects per scene")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    with exits_in_one_line():
        split = Split(args.data_dir, "test")
        detector = Detector(args.run_dir)
    renderer = Renderer()
    found_at = {}
    for seed in range(args.seeds):
        ids = np.random.default_rng([seed, 99]).choice(split.object_ids, min(args.objects, len(split.object_ids)),
                                                       replace=False)
        rows = []
        for size in args.sizes:
            rgb, labels = renderer.scene(ids, np.random.default_rng([seed, 7]), size, size // 8, 4)
            found = detector.find(rgb, {int(i): split.views(i)[:4] for i in ids})
            hits = dets = true = 0
            for k, i in enumerate(ids):
                b, t = found[int(i)]["boxes"], visible(labels.boxes[k])
                dets, true, hits = dets + len(b), true + len(t), hits + instances_found(b, t)
            found_at[seed, size] = hits
            rows.append(f"{size}px: {dets} detections, {hits} of {true} true instances found (IoU >= 0.5)")
        print(f"scene seed {seed}: " + "; ".join(rows))
    return found_at


if __name__ == "__main__":
    main()
