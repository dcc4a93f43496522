# The Python API's speed: start-up, then scenes/s over the 48 test scenes saved as PNG, 3 objects
# of 4 views each (those of test scene 5). Run from the repo root:
#   PYTHONPATH=. .venv/bin/python docs/api_speed.py          (~30 s on 2 cores)
import os
import tempfile
import time

started = time.perf_counter()
from PIL import Image  # noqa: E402

from data import Split  # noqa: E402
from detect import Detector  # noqa: E402
from models import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
imported = time.perf_counter()
split = Split("data/small", "test")
with tempfile.TemporaryDirectory() as folder:
    scenes = []
    for i in range(split.num_scenes):
        scenes.append(os.path.join(folder, f"scene_{i:02d}.png"))
        Image.fromarray(split.scene(i)["rgb"]).save(scenes[-1])
    views = {int(o): list(split.views(o)[:4]) for o in split.scene(5)["obj_ids"][:3]}
    loading = time.perf_counter()
    detector = Detector("pretrained")
    objects = {name: detector.embed(v) for name, v in views.items()}
    detector.find(scenes[0], objects)
    ready = time.perf_counter()
    for path in scenes:
        detector.find(path, objects)
    done = time.perf_counter()
print(f"imports {imported - started:.1f} s, load + embed + first find {ready - loading:.1f} s, "
      f"{len(scenes)} scenes in {done - ready:.2f} s = {len(scenes) / (done - ready):.1f} scenes/s")
