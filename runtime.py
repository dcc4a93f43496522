"""yolz without JAX: a run exported by export.py, run by onnxruntime (pip install -r
requirements-onnx.txt: onnxruntime, numpy, Pillow, tqdm).

    python export.py pretrained pretrained_onnx
    python detect.py --backend onnx --run-dir pretrained_onnx --scene scene.png --refs-dir refs/

    from detect import Detector
    detector = Detector("pretrained_onnx", backend="onnx")

`Exported` is the ONNX backend of inference.Inference, as models.Run is the JAX one: a config,
embed(views, backgrounds) and find(scenes, embeddings), so that decoding, scoring, flips, the
pyramid and NMS are the same numpy code for both. An export dir holds embedding.onnx, scene.onnx
and export.json (EXPORT_FILE): the graphs' inputs and outputs, the model config inference reads,
the run's inference settings and operating points, and the preprocessing a caller must do.
"""

import dataclasses
import os

import numpy as np
import onnxruntime

from inference import read_run_settings
from util import DataError, read_json

EXPORT_FILE = "export.json"
EXPORT_FORMAT = "yolz-onnx"
EXPORT_VERSION = 1
GRAPHS = ("embedding", "scene")  # each in NAME.onnx


@dataclasses.dataclass(frozen=True)
class ExportedConfig:
    """What inference and detect.Detector read of models.ModelConfig, by the same names."""

    scene_size: int
    view_size: int
    embedding_dim: int
    grid_size: int
    stride: float
    priors: tuple
    box_cells: int


def read_export(export_dir):
    """export_dir/export.json checked -> its dict, "config" as an ExportedConfig and "inference" as
    inference.read_run_file's; a DataError naming what is missing or from another version."""
    path = os.path.join(export_dir, EXPORT_FILE)
    if not os.path.isdir(export_dir):
        raise DataError(f"export dir {export_dir} does not exist: make one with python export.py RUN_DIR {export_dir}")
    if not os.path.exists(path):
        raise DataError(f"{export_dir} holds no {EXPORT_FILE}: with --backend onnx give a dir export.py wrote "
                        f"(python export.py RUN_DIR OUT_DIR), or --backend jax for a run dir")
    stored = read_json(path)
    if not isinstance(stored, dict) or stored.get("format") != EXPORT_FORMAT:
        raise DataError(f"{path} is not a yolz ONNX export: export the run again (python export.py RUN_DIR "
                        f"{export_dir})")
    if stored.get("version") != EXPORT_VERSION:
        raise DataError(f"{path} is version {stored.get('version')} of the export, this code reads version "
                        f"{EXPORT_VERSION}: export the run again with this code")
    try:
        config = stored["config"]
        config = ExportedConfig(**{**config, "priors": tuple(tuple(p) for p in config["priors"])})
    except (KeyError, TypeError) as error:
        raise DataError(f"{path}: its config is incomplete ({error}): export the run again") from None
    missing = [f"{name}.onnx" for name in GRAPHS if not os.path.exists(os.path.join(export_dir, f"{name}.onnx"))]
    if missing:
        raise DataError(f"{export_dir} has no {', '.join(missing)}: export the run again")
    fix = f"export the run again (python export.py RUN_DIR {export_dir})"
    return {**stored, "config": config, "inference": read_run_settings(stored.get("inference"), path, fix)}


def session(graph):
    """An onnxruntime CPU session of one graph (a path, or the serialised model), a thread per
    physical core (its default: one thread is 1.8x slower here, docs/benchmarks.md's machine). One
    it cannot load is a DataError naming it."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused constants are no user's concern
    try:
        return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types, one per failure, no common base
        name = graph if isinstance(graph, str) else "the converted graph"
        raise DataError(f"{name}: onnxruntime cannot load it ({str(error).splitlines()[0]:.160}): export the run "
                        "again") from None


class Exported:
    """An export dir's graphs in onnxruntime sessions, called as inference.Inference calls a model."""

    def __init__(self, export_dir):
        export = read_export(export_dir)
        self.config = export["config"]
        self.run_file = export["inference"]  # inference.read_run_file's dict, for Inference.from_run_file
        self.embedding, self.scene = (session(os.path.join(export_dir, f"{name}.onnx")) for name in GRAPHS)
        self.has_boxes = len(self.scene.get_outputs()) == 2

    def embed(self, views, backgrounds):
        """(K, N, h, w, 4) uint8 views on (K, N, 3) uint8 backgrounds -> (K, E) float32 object embeddings."""
        return self.embedding.run(None, {"views": np.ascontiguousarray(views, np.uint8),
                                         "backgrounds": np.ascontiguousarray(backgrounds, np.uint8)})[0]

    def find(self, scenes, embeddings):
        """(B, H, H, 3) uint8 scenes, (B, C, E) object embeddings -> (B, C, G, G) float32 P(object) and
        (B, C, G, G, A, 5) raw box outputs (None without a box head): the scene graph takes one scene
        and its C objects, the backbone once for all of them."""
        outputs = [self.scene.run(None, {"scene": np.ascontiguousarray(scene, np.uint8),
                                         "embeddings": np.ascontiguousarray(e, np.float32)})
                   for scene, e in zip(scenes, embeddings)]
        probs = np.stack([o[0] for o in outputs])
        return probs, np.stack([o[1] for o in outputs]) if self.has_boxes else None
