"""A trained run as ONNX, to run without JAX (runtime.py, detect.py --backend onnx).

    pip install --no-deps -r requirements-export.txt    # jax2onnx and onnxruntime, beside requirements.txt
    python export.py pretrained pretrained_onnx         # ~20 s on 2 cores
    python detect.py --backend onnx --run-dir pretrained_onnx --scene scene.png --refs-dir refs/

Writes OUT_DIR (new or empty) with
  embedding.onnx  views (K, N, h, w, 4) uint8 RGBA, backgrounds (K, N, 3) uint8 -> embeddings (K, E) float32
  scene.onnx      scene (H, H, 3) uint8 RGB, embeddings (C, E) float32 -> p_object (C, G, G) float32 and,
                  with a box head, box_outputs (C, G, G, A, 5) float32 raw (t_o, t_x, t_y, t_w, t_h)
  export.json     the graphs' inputs and outputs, the model config inference reads, the run's inference
                  settings and operating points, the preprocessing, and the check below
The graphs are the jitted functions the JAX path runs (models.embed_objects, and find_in_scenes
of one scene) converted by jax2onnx with the weights as constants, so compositing on the
background, scaling to [0, 1], the mean of the views' embeddings and the sigmoid are inside them;
the letterbox before them and decoding, scoring and NMS after them are numpy, shared by both
backends. Each export is checked before it is written: onnxruntime against JAX on random inputs,
every output within TOLERANCE (the differences are recorded in export.json).
"""

import argparse
import importlib.metadata
import logging
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

try:  # optional requirements: a missing one is a line saying how to install it, not a traceback
    import onnx
    from jax2onnx import to_onnx

    from runtime import EXPORT_FILE, EXPORT_FORMAT, EXPORT_VERSION, GRAPHS, ExportedConfig, session
except ModuleNotFoundError as missing:
    sys.exit(f"error: export.py needs {missing.name}: .venv/bin/pip install --no-deps -r requirements-export.txt")

from inference import read_run_file  # noqa: E402
from models import embed_objects, find_in_scenes, load_run  # noqa: E402
from util import GREY, DataError, atomic_write, exits_in_one_line, remove_stale_temps, write_json_atomic  # noqa: E402

# onnx_ir's notes on untyped shape constants are noise to a user: the check below is what counts
logging.getLogger("onnx_ir").setLevel(logging.ERROR)
OPSET = 21  # onnxruntime 1.18 and later run it
TOLERANCE = 1e-4  # the largest |ONNX - JAX| of any output an export may have
CHECK_SCENES, CHECK_OBJECTS, CHECK_VIEWS = 2, 3, 4  # the check's random inputs
PREPROCESSING = {
    "grey": GREY,
    "scene": "RGB uint8 (scene_size, scene_size, 3): the image scaled to fit (bilinear, aspect kept) and centred "
             "on a square filled with grey (RGBA composited on grey first); the graph scales it to [0, 1]",
    "views": "RGBA uint8 (view_size, view_size, 4) each: scaled to fit (bilinear) and centred on a transparent "
             "square; the graph composites them on `backgrounds` (grey) and scales to [0, 1]",
    "p_object": "P(object) per cell of the grid_size x grid_size grid, stride scene pixels a cell",
    "box_outputs": "per cell and prior: boxes.decode with the config's priors, stride and box_cells",
}


def graphs(run):
    """A run's two inference functions with its weights closed over -> {name: (function, input specs,
    input names, output names)}; a dimension named by a string is left free in the graph."""
    c = run.config
    params, nt_params, models = run.params, run.nt_params, run.models

    def embed(views, backgrounds):
        return embed_objects(params, nt_params, views, backgrounds, models)

    def find(scene, embeddings):
        probs, boxes = find_in_scenes(params, nt_params, scene[None], embeddings[None], models)
        return (probs[0],) if boxes is None else (probs[0], boxes[0])

    return {"embedding": (embed, [jax.ShapeDtypeStruct(("K", "N", c.view_size, c.view_size, 4), jnp.uint8),
                                  jax.ShapeDtypeStruct(("K", "N", 3), jnp.uint8)],
                          ["views", "backgrounds"], ["embeddings"]),
            "scene": (find, [jax.ShapeDtypeStruct((c.scene_size, c.scene_size, 3), jnp.uint8),
                             jax.ShapeDtypeStruct(("C", c.embedding_dim), jnp.float32)],
                      ["scene", "embeddings"], ["p_object", "box_outputs"] if c.priors else ["p_object"])}


def check_inputs(config, seed=0):
    """Random inputs of both graphs -> {name: [input arrays]}: scenes and views of uniform noise,
    views half transparent, embeddings on the unit sphere."""
    rng = np.random.default_rng(seed)
    v, s, e = config.view_size, config.scene_size, config.embedding_dim
    views = rng.integers(0, 256, (CHECK_OBJECTS, CHECK_VIEWS, v, v, 4), dtype=np.uint8)
    views[..., 3] = np.where(rng.random(views.shape[:-1]) < 0.5, 0, 255)
    embeddings = rng.standard_normal((CHECK_OBJECTS, e)).astype(np.float32)
    return {"embedding": [[views, np.full((CHECK_OBJECTS, CHECK_VIEWS, 3), GREY, np.uint8)]],
            "scene": [[rng.integers(0, 256, (s, s, 3), dtype=np.uint8),
                       embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)] for _ in range(CHECK_SCENES)]}


def largest_differences(function, ort, inputs, input_names, output_names):
    """One graph's outputs by an onnxruntime session against the function's by JAX on each of
    `inputs` -> {output name: the largest |difference|}."""
    worst = dict.fromkeys(output_names, 0.0)
    for arrays in inputs:
        ours = ort.run(None, dict(zip(input_names, arrays)))
        theirs = function(*arrays)
        theirs = theirs if isinstance(theirs, tuple) else (theirs,)
        for out, a, b in zip(output_names, ours, theirs):
            worst[out] = max(worst[out], float(np.max(np.abs(a - np.asarray(b)))))
    return worst


def described(values):
    """onnxruntime's inputs or outputs -> {name: [dims (a free one by its name), dtype]}."""
    return {v.name: [*v.shape, v.type.removeprefix("tensor(").removesuffix(")")] for v in values}


def check_out_dir(out_dir):
    """A DataError unless out_dir is new, empty, or holds only an unfinished export (graphs without
    export.json: an export that was stopped, which this one replaces)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"OUT_DIR {out_dir} is a file: give a new or empty directory")
    if not os.path.isdir(out_dir):
        return
    for name in [EXPORT_FILE, *(f"{g}.onnx" for g in GRAPHS)]:
        remove_stale_temps(os.path.join(out_dir, name))
    entries = set(os.listdir(out_dir))
    if EXPORT_FILE in entries:
        raise DataError(f"OUT_DIR {out_dir} holds an export already: give a new directory, or delete it first")
    if entries - {f"{g}.onnx" for g in GRAPHS}:
        raise DataError(f"OUT_DIR {out_dir} holds files export.py did not write: give a new or empty directory")


def export(run_dir, out_dir, opset=OPSET, log=print):
    """Writes run_dir's graphs and export.json into out_dir (the module's docstring) -> export.json's dict."""
    check_out_dir(out_dir)
    settings = read_run_file(run_dir)
    run = load_run(run_dir)
    c = run.config
    inputs = check_inputs(c)
    protos, checked, described_graphs, started = {}, {}, {}, time.perf_counter()
    for name, (function, specs, input_names, output_names) in graphs(run).items():
        protos[name] = to_onnx(function, specs, model_name=f"yolz_{name}", opset=opset, input_names=input_names,
                               output_names=output_names)
        ort = session(protos[name].SerializeToString())
        checked[name] = largest_differences(function, ort, inputs[name], input_names, output_names)
        described_graphs[name] = {"file": f"{name}.onnx", "inputs": described(ort.get_inputs()),
                                  "outputs": described(ort.get_outputs())}
        log(f"{name}: converted and checked, largest |ONNX - JAX| "
            + ", ".join(f"{k} {v:.1e}" for k, v in checked[name].items()))
    worst = max((v, f"{g} {k}") for g, outs in checked.items() for k, v in outs.items())
    if worst[0] > TOLERANCE:
        raise DataError(f"{run_dir}: the ONNX graphs differ from JAX by up to {worst[0]:.2g} ({worst[1]}), over "
                        f"{TOLERANCE:g}: a converter version other than requirements-export.txt's? Nothing was written")
    os.makedirs(out_dir, exist_ok=True)
    for name, proto in protos.items():
        with atomic_write(os.path.join(out_dir, f"{name}.onnx"), suffix=".onnx") as tmp:
            onnx.save_model(proto, tmp)
    config = ExportedConfig(scene_size=c.scene_size, view_size=c.view_size, embedding_dim=c.embedding_dim,
                            grid_size=c.grid_size, stride=c.stride, priors=c.priors, box_cells=c.box_cells)
    stored = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "run_dir": os.path.abspath(run_dir),
              "converter": f"jax2onnx {importlib.metadata.version('jax2onnx')}, opset {opset}",
              "graphs": described_graphs, "config": {**vars(config), "priors": [list(p) for p in c.priors]},
              "inference": settings, "preprocessing": PREPROCESSING,
              "check": {"inputs": f"random, seed 0: {CHECK_SCENES} scenes, {CHECK_OBJECTS} objects of {CHECK_VIEWS} "
                                  "views", "largest_abs_difference": checked}}
    write_json_atomic(os.path.join(out_dir, EXPORT_FILE), stored)  # last: a dir with it holds a whole export
    log(f"wrote {out_dir}: " + ", ".join(f"{n} ({os.path.getsize(os.path.join(out_dir, n)) / 1e6:.1f} MB)"
                                         for n in [*(f"{g}.onnx" for g in GRAPHS), EXPORT_FILE])
        + f" in {time.perf_counter() - started:.0f} s")
    return stored


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run, e.g. pretrained")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a new or empty directory for the export")
    parser.add_argument("--opset", type=int, default=OPSET, help="the ONNX opset (default: %(default)s)")
    args = parser.parse_args(argv)
    with exits_in_one_line():
        return export(args.run_dir, args.out_dir, args.opset, log=lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    main()
