"""export.py and the ONNX backend (runtime.py) against the JAX path they must agree with, on the
tiny run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import detect
import export
from conftest import REPO
from data import Split
from experiments import onnx_equivalence
from inference import read_run_file
from models import load_config
from runtime import EXPORT_FILE, Exported
from util import DataError

# run as `python -c` before detect.main: any import of these is an error, so the test fails if the
# ONNX path reaches for JAX, Keras or OpenCV (requirements-onnx.txt has none of them)
WITHOUT_JAX = """
import sys
class Refused:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib", "keras", "cv2", "optax", "tensorflow"):
            raise ImportError(f"the ONNX path imported {name}")
sys.meta_path.insert(0, Refused())
import detect
detect.main()
"""


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    return out, export.export(str(trained), str(out), log=lambda line: None)


@pytest.fixture(scope="module")
def pictures(tiny_data, tmp_path_factory):
    """A test scene and two of its objects' views as PNG files -> (scene path, refs dir)."""
    root = tmp_path_factory.mktemp("pictures")
    split = Split(tiny_data, "test")
    scene = split.scene(1)
    Image.fromarray(scene["rgb"]).save(root / "scene.png")
    for obj_id in scene["obj_ids"][:2]:
        os.makedirs(root / "refs" / f"object_{obj_id}")
        for i, view in enumerate(split.views(obj_id)[:3]):
            Image.fromarray(view).save(root / "refs" / f"object_{obj_id}" / f"{i}.png")
    return str(root / "scene.png"), str(root / "refs")


def threshold_in_a_gap(scores, top=8):
    """A threshold midway across the widest gap between the `top` best of these scores: the tiny
    run's scores crowd together, and one at a threshold float noise could carry across is no test."""
    best = np.sort(np.asarray(scores))[::-1][:top]
    k = int(np.argmax(best[:-1] - best[1:]))
    return float(best[k] + best[k + 1]) / 2


def test_the_export_describes_its_graphs_and_carries_the_runs_settings(trained, exported):
    out, stored = exported
    config = load_config(os.path.join(trained, "model_config.json"))
    v, s, g, e, a = config.view_size, config.scene_size, config.grid_size, config.embedding_dim, len(config.priors)
    assert sorted(os.listdir(out)) == ["embedding.onnx", EXPORT_FILE, "scene.onnx"]
    graphs = stored["graphs"]
    assert graphs["embedding"]["inputs"] == {"views": ["K", "N", v, v, 4, "uint8"],
                                             "backgrounds": ["K", "N", 3, "uint8"]}
    assert graphs["embedding"]["outputs"] == {"embeddings": ["K", e, "float"]}
    assert graphs["scene"]["inputs"] == {"scene": [s, s, 3, "uint8"], "embeddings": ["C", e, "float"]}
    assert graphs["scene"]["outputs"] == {"p_object": ["C", g, g, "float"], "box_outputs": ["C", g, g, a, 5, "float"]}
    assert stored["inference"] == read_run_file(trained)
    assert all(d <= export.TOLERANCE for graph in stored["check"]["largest_abs_difference"].values()
               for d in graph.values())
    model = Exported(str(out))
    assert model.config.priors == config.priors and model.config.stride == config.stride
    assert json.loads((out / EXPORT_FILE).read_text())["config"]["grid_size"] == g


def test_onnx_matches_jax_on_the_test_split(trained, exported, tiny_data):
    """P(object), box outputs and embeddings within 1e-4 over every test episode, and test.py's
    figures within 1e-3, the same threshold for both."""
    worst, by_backend = onnx_equivalence.main(["--run-dir", str(trained), "--export-dir", str(exported[0]),
                                               "--data-dir", tiny_data, "--threshold", "0.05", "--flips",
                                               "--absent-queries", "1"])
    assert set(worst) == {"embeddings", "p_object", "box_outputs"} and max(worst.values()) <= 1e-4
    for name in onnx_equivalence.FIGURES:
        assert by_backend["onnx"][name] == pytest.approx(by_backend["jax"][name], abs=1e-3), name


def test_detect_with_the_onnx_backend_imports_no_jax_and_finds_what_jax_finds(trained, exported, pictures, capsys):
    scene, refs = pictures
    flags = ["--scene", scene, "--refs-dir", refs, "--pyramid-scales", "2"]
    everything = detect.main([*flags, "--run-dir", str(trained), "--threshold", "0"])
    flags += ["--threshold", str(threshold_in_a_gap([d["score"] for o in everything["objects"]
                                                      for d in o["detections"]]))]
    by_jax = detect.main([*flags, "--run-dir", str(trained)])
    capsys.readouterr()
    done = subprocess.run([sys.executable, "-c", WITHOUT_JAX, *flags, "--backend", "onnx", "--run-dir",
                           str(exported[0])], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    by_onnx = json.loads(done.stdout)
    assert by_onnx["threshold"] == by_jax["threshold"] and len(by_onnx["objects"]) == 2
    assert any(o["detections"] for o in by_jax["objects"])
    for ours, theirs in zip(by_onnx["objects"], by_jax["objects"]):
        assert [d["box"] for d in ours["detections"]] == [d["box"] for d in theirs["detections"]]
        np.testing.assert_allclose([d["score"] for d in ours["detections"]],
                                   [d["score"] for d in theirs["detections"]], atol=1e-3)


def test_the_detector_api_runs_either_backend_alike(trained, exported, pictures):
    scene, refs = pictures
    views = [os.path.join(refs, name, f) for name in sorted(os.listdir(refs))[:1]
             for f in sorted(os.listdir(os.path.join(refs, name)))]
    detectors = [detect.Detector(str(trained), "jax", flips=True),
                 detect.Detector(str(exported[0]), "onnx", flips=True)]
    threshold = threshold_in_a_gap(detectors[0].find(scene, {"it": views}, threshold=0)["it"]["scores"])
    found = [d.find(scene, {"it": views}, threshold=threshold)["it"] for d in detectors]
    assert len(found[0]["boxes"])
    np.testing.assert_array_equal(found[0]["boxes"], found[1]["boxes"])
    np.testing.assert_allclose(found[0]["heatmap"], found[1]["heatmap"], atol=1e-4)


def test_the_wrong_dir_or_backend_is_one_clear_line(trained, exported):
    out = str(exported[0])
    for run_dir, backend, message in ((str(trained), "onnx", "holds no export.json: with --backend onnx"),
                                      (out, "jax", "holds an ONNX export"),
                                      (out, "tf", "backend 'tf': give one of jax, onnx")):
        with pytest.raises(DataError, match=message):
            detect.Detector(run_dir, backend)


def test_the_onnx_backend_without_onnxruntime_says_what_to_install(exported, monkeypatch):
    monkeypatch.delitem(sys.modules, "runtime", raising=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it fails
    with pytest.raises(DataError, match="the onnx backend needs onnxruntime: pip install -r requirements-onnx.txt"):
        detect.Detector(str(exported[0]), "onnx")


def test_an_export_from_another_version_is_refused(exported, tmp_path):
    copy = tmp_path / "old"
    os.makedirs(copy)
    for name in os.listdir(exported[0]):
        (copy / name).write_bytes((exported[0] / name).read_bytes())
    stored = json.loads((copy / EXPORT_FILE).read_text())
    (copy / EXPORT_FILE).write_text(json.dumps({**stored, "version": 99}))
    with pytest.raises(DataError, match="version 99 of the export, this code reads version 1"):
        Exported(str(copy))
    (copy / EXPORT_FILE).write_text(json.dumps({**stored, "inference": {"operating_points": [{"threshold": 3}]}}))
    with pytest.raises(DataError, match="has no threshold from 0 to 1: export the run again"):
        Exported(str(copy))


def test_export_never_writes_over_what_is_there(trained, exported, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="holds an export already"):
        export.main([str(trained), str(exported[0])])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(SystemExit, match="holds files export.py did not write"):
        export.main([str(trained), str(tmp_path / "mine")])
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    monkeypatch.setattr(export, "TOLERANCE", 0.0)  # a converter that got it wrong: nothing is written
    with pytest.raises(DataError, match="differ from JAX by up to .* Nothing was written"):
        export.export(str(trained), str(tmp_path / "new"), log=lambda line: None)
    assert not os.path.exists(tmp_path / "new")


def test_a_stopped_export_is_finished_by_running_it_again(trained, exported, tmp_path):
    """A stopped export leaves graphs without export.json (written last): a rerun replaces them."""
    out = tmp_path / "stopped"
    out.mkdir()
    (out / "scene.onnx").write_bytes(b"half a graph")
    export.main([str(trained), str(out)])
    again, first = Exported(str(out)), Exported(str(exported[0]))
    scenes = np.full((1, again.config.scene_size, again.config.scene_size, 3), 128, np.uint8)
    embeddings = np.eye(2, again.config.embedding_dim, dtype=np.float32)[None]
    np.testing.assert_array_equal(again.find(scenes, embeddings)[0], first.find(scenes, embeddings)[0])
