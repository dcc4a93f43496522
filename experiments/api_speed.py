"""The Python API's speed: start-up, then scenes/s over a split's scenes saved as PNG, searched for
a few objects of one scene (their rendered views as references) through detect.Detector.

    python -m experiments.api_speed            # ~30 s on 2 cores
"""

import argparse
import os
import tempfile
import time

started = time.perf_counter()
from PIL import Image  # noqa: E402

from data import Split  # noqa: E402
from detect import Detector  # noqa: E402
from models import enable_compilation_cache  # noqa: E402
from util import exits_in_one_line, non_negative_int, positive_int  # noqa: E402

imported = time.perf_counter()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained")
    parser.add_argument("--data-dir", default="data/small")
    parser.add_argument("--scene", type=non_negative_int, default=5, help="the test scene whose objects are searched")
    parser.add_argument("--objects", type=positive_int, default=3, help="objects searched in every scene")
    parser.add_argument("--views", type=positive_int, default=4, help="reference views per object")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    with exits_in_one_line(), tempfile.TemporaryDirectory() as folder:
        split = Split(args.data_dir, "test")
        scene_index = min(args.scene, split.num_scenes - 1)
        scenes = []
        for i in range(split.num_scenes):
            scenes.append(os.path.join(folder, f"scene_{i:02d}.png"))
            Image.fromarray(split.scene(i)["rgb"]).save(scenes[-1])
        views = {int(o): list(split.views(o)[:args.views]) for o in split.scene(scene_index)["obj_ids"][:args.objects]}
        loading = time.perf_counter()
        detector = Detector(args.run_dir)
        objects = {name: detector.embed(v) for name, v in views.items()}
        detector.find(scenes[0], objects)
        ready = time.perf_counter()
        for path in scenes:
            detector.find(path, objects)
        done = time.perf_counter()
    print(f"imports {imported - started:.1f} s, load + embed + first find {ready - loading:.1f} s, "
          f"{len(scenes)} scenes in {done - ready:.2f} s = {len(scenes) / (done - ready):.1f} scenes/s")
    return len(scenes) / (done - ready)


if __name__ == "__main__":
    main()
