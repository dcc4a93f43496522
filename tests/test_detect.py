import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import detect
from data import Split
from inference import PYRAMID_SCALES


def save(path, array):
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture(scope="module")
def images(tiny_data, tmp_path_factory):
    """A test scene at 3x the model's size in greyscale, and reference views as RGBA and RGB PNGs."""
    root = tmp_path_factory.mktemp("images")
    split = Split(tiny_data, "test")
    scene = split.scene(0)
    big = np.asarray(Image.fromarray(scene["rgb"]).resize((384, 300)).convert("L"))  # not square, greyscale
    views = split.views(scene["obj_ids"][0])
    refs = [save(root / "ref0.png", views[0]), save(root / "ref1.png", views[1][..., :3])]
    for name, obj_id in (("first", scene["obj_ids"][0]), ("second", scene["obj_ids"][1])):
        os.makedirs(root / "refs" / name)
        for i, view in enumerate(split.views(obj_id)[:2]):
            save(root / "refs" / name / f"{i}.png", view)
    return {"scene": save(root / "scene.png", big), "refs": refs, "refs_dir": str(root / "refs"), "root": root}


def test_detects_on_ordinary_png_files(trained, images, capsys):
    out = images["root"] / "found.png"
    result = detect.main(["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(trained),
                          "--threshold", "0", "--out", str(out)])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(result))
    (only,) = result["objects"]
    assert only["detections"], "at threshold 0 every surviving box is reported"
    boxes = np.array([d["box"] for d in only["detections"]])
    assert (boxes[:, [0, 2]] <= 384).all() and (boxes[:, [1, 3]] <= 300).all() and (boxes >= 0).all()
    scores = [d["score"] for d in only["detections"]]
    assert scores == sorted(scores, reverse=True)
    assert Image.open(out).size == (384, 300)


def test_several_objects_share_one_scene_pass(trained, images):
    result = detect.main(["--scene", images["scene"], "--refs-dir", images["refs_dir"], "--run-dir", str(trained),
                          "--threshold", "0"])
    assert [o["name"] for o in result["objects"]] == ["first", "second"]
    assert all(len(o["references"]) == 2 for o in result["objects"])


def test_letterbox_maps_points_back():
    image = np.zeros((50, 100, 4), dtype=np.uint8)
    boxed, scale, (pad_x, pad_y) = detect.letterbox(image, 64)
    assert boxed.shape == (64, 64, 4) and scale == 0.64 and (pad_x, pad_y) == (0, 16)
    assert boxed[0, 0, 3] == 0  # the padding is transparent, so it is composited on grey


def test_bad_input_is_a_clear_error(trained, images, tmp_path):
    base = ["--run-dir", str(trained)]
    with pytest.raises(SystemExit, match="nowhere.png: no such file"):
        detect.main(["--scene", str(tmp_path / "nowhere.png"), "--refs", *images["refs"], *base])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit, match="broken.png: not a readable image"):
        detect.main(["--scene", images["scene"], "--refs", str(tmp_path / "broken.png"), *base])
    with pytest.raises(SystemExit) as error:  # argparse: --refs needs at least one
        detect.main(["--scene", images["scene"], "--refs", *base])
    assert error.value.code == 2
    os.makedirs(tmp_path / "empty" / "mug")
    with pytest.raises(SystemExit, match="mug holds no reference images"):
        detect.main(["--scene", images["scene"], "--refs-dir", str(tmp_path / "empty"), *base])
    no_weights = shutil.copytree(trained, tmp_path / "run")
    os.remove(no_weights / "embedding.weights.h5")
    with pytest.raises(SystemExit, match="has no embedding.weights.h5"):
        detect.main(["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(no_weights)])


def test_images_as_users_have_them(tmp_path):
    """16-bit greyscale is scaled to 8 bits (not clipped to white); an EXIF orientation is applied."""
    ramp = (np.arange(64, dtype=np.uint16)[None].repeat(8, 0) * 1024)  # (8, 64) 0..64512
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    rgba = detect.read_image(str(tmp_path / "grey16.png"))
    assert rgba.shape == (8, 64, 4) and rgba[0, 0, 0] == 0 and 245 <= rgba[0, -1, 0] <= 255
    assert len(np.unique(rgba[..., 0])) > 32
    wide = np.zeros((10, 20, 3), np.uint8)
    wide[:, :5] = 255  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(wide).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    shown = detect.read_image(str(tmp_path / "turned.jpg"))
    assert shown.shape == (20, 10, 4)  # as a viewer shows it: tall
    assert shown[:5, :, 0].mean() > 200 and shown[-5:, :, 0].mean() < 50  # white now on top


def test_bad_flags_and_outputs_are_refused_before_inference(trained, images, tmp_path, capsys):
    base = ["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(trained)]
    for value in ("2", "nan", "-0.1"):
        with pytest.raises(SystemExit) as error:
            detect.main([*base, "--threshold", value])
        assert error.value.code == 2 and "argument --threshold" in capsys.readouterr().err
    for out, message in ((tmp_path / "no" / "x.png", "does not exist: create it first"),
                         (tmp_path, "is a directory"), (tmp_path / "x.unknown", "unknown image type")):
        with pytest.raises(SystemExit, match=message):
            detect.main([*base, "--out", str(out)])
    result = detect.main([*base, "--threshold", "0", "--out", str(tmp_path / "found.jpg")])
    assert Image.open(tmp_path / "found.jpg").format == "JPEG"  # the format the suffix names
    assert json.loads(json.dumps(result)) == result  # strict JSON: no NaN anywhere


def test_the_python_api_takes_paths_arrays_or_embeddings_and_the_cli_agrees(trained, images):
    detector = detect.Detector(str(trained), threshold=0)
    by_path = detector.find(images["scene"], {"mug": images["refs"]})
    scene = np.asarray(Image.open(images["scene"]))  # (300, 384) greyscale
    views = [np.asarray(Image.open(p)) for p in images["refs"]]  # RGBA and RGB
    by_array = detector.find(scene, {"mug": views})
    by_embedding = detector.find(scene, {"mug": detector.embed(images["refs"])})
    assert len(by_path["mug"]["boxes"]) > 0
    heat = by_path["mug"]["heatmap"]  # per cell, at the scene's own size
    assert heat.shape == (300, 384) and heat.dtype == np.float32 and 0 <= heat.min() <= heat.max() <= 1
    for other in (by_array, by_embedding):
        np.testing.assert_array_equal(other["mug"]["boxes"], by_path["mug"]["boxes"])
        np.testing.assert_allclose(other["mug"]["scores"], by_path["mug"]["scores"], rtol=1e-6)
    cli = detect.main(["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(trained),
                       "--threshold", "0"])
    assert [d["box"] for d in cli["objects"][0]["detections"]] == by_path["mug"]["boxes"].tolist()
    with pytest.raises(detect.DataError, match=r"\(H, W\), \(H, W, 3\) or \(H, W, 4\) uint8"):
        detector.find(scene.astype(float), {"mug": views})


def test_a_folder_of_scenes_in_one_call(trained, images, tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    for name in ("a.png", "b.bmp"):
        Image.open(images["scene"]).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    base = ["--refs-dir", images["refs_dir"], "--run-dir", str(trained), "--threshold", "0"]
    results = detect.main(["--scene", str(folder), *base, "--out", str(tmp_path / "found")])
    assert [os.path.basename(r["scene"]) for r in results] == ["a.png", "b.bmp"]
    same = [[d["box"] for d in r["objects"][0]["detections"]] for r in results]
    assert same[0] and same[0] == same[1]  # one image, saved as PNG and as BMP
    assert sorted(os.listdir(tmp_path / "found")) == [".made-by-yolz-detect", "a.png", "b.png"]
    detect.main(["--scene", str(folder), *base, "--out", str(tmp_path / "found")])  # its own dir: written again
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="holds files detect.py did not write"):
        detect.main(["--scene", str(folder), *base, "--out", str(tmp_path / "mine")])
    Image.open(images["scene"]).save(tmp_path / "a.jpg")
    with pytest.raises(SystemExit, match="several scenes would write a.png"):
        detect.main(["--scene", str(folder), str(tmp_path / "a.jpg"), *base, "--out", str(tmp_path / "other")])
    assert not (tmp_path / "other").exists()
    with pytest.raises(SystemExit, match="the folder holds no images"):
        detect.main(["--scene", str(tmp_path / "mine"), *base])


def test_a_pyramid_adds_small_boxes_only(trained, images):
    """--pyramid-scales: the enlarged scene adds boxes, smaller than the smallest prior at the model's
    scale (inference.with_pyramid's rule, by hand in test_boxes.py); the heatmap is the scene's own."""
    plain = detect.Detector(str(trained), threshold=0).find(images["scene"], {"mug": images["refs"]})["mug"]
    detector = detect.Detector(str(trained), threshold=0, pyramid_scales=(2.0,))
    pyramid = detector.find(images["scene"], {"mug": images["refs"]})["mug"]
    new = np.array([b for b in pyramid["boxes"].tolist() if b not in plain["boxes"].tolist()])
    assert len(new) > 0
    to_model = detector.config.scene_size / 384  # the 384x300 scene letterboxed to the model's size
    sides = np.sqrt(np.prod(new[:, 2:] - new[:, :2], axis=1)) * to_model
    smallest = np.sqrt(np.min(np.prod(detector.config.priors, axis=1)))
    assert (sides < smallest + 2 * to_model).all()  # + the rounding to whole pixels
    np.testing.assert_array_equal(pyramid["heatmap"], plain["heatmap"])
    cli = detect.main(["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(trained),
                       "--threshold", "0", "--pyramid-scales", "2"])
    assert [d["box"] for d in cli["objects"][0]["detections"]] == pyramid["boxes"].tolist()
    # --pyramid-auto: the same pyramid, kept or not by the median object's gain (by hand in test_boxes.py)
    auto = detect.main(["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(trained),
                        "--threshold", "0", "--pyramid-auto"])
    gated = detect.Detector(str(trained), threshold=0, pyramid_scales=PYRAMID_SCALES, pyramid_auto=True)
    assert [d["box"] for d in auto["objects"][0]["detections"]] == \
        gated.find(images["scene"], {"mug": images["refs"]})["mug"]["boxes"].tolist()
    assert [d["box"] for d in auto["objects"][0]["detections"]] in (pyramid["boxes"].tolist(), plain["boxes"].tolist())


def test_flips_change_the_answer_and_the_command_line_gives_it(trained, images):
    """--flips: the outputs averaged over the scene and its mirror images (by hand in test_boxes.py)
    are not the plain ones, and detect.py's command line answers as Detector does."""
    plain = detect.Detector(str(trained), threshold=0).find(images["scene"], {"mug": images["refs"]})["mug"]
    flipped = detect.Detector(str(trained), threshold=0, flips=True).find(images["scene"], {"mug": images["refs"]})
    flipped = flipped["mug"]
    assert flipped["heatmap"].shape == plain["heatmap"].shape and not np.allclose(flipped["heatmap"], plain["heatmap"])
    assert 0 <= flipped["heatmap"].min() and flipped["heatmap"].max() <= 1
    cli = detect.main(["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(trained),
                       "--threshold", "0", "--flips"])
    assert [d["box"] for d in cli["objects"][0]["detections"]] == flipped["boxes"].tolist()


def test_an_output_that_is_an_input_is_refused(trained, images, tmp_path):
    scene = str(shutil.copy(images["scene"], tmp_path / "scene.png"))
    ref = str(shutil.copy(images["refs"][0], tmp_path / "ref.png"))
    before = {p: open(p, "rb").read() for p in (scene, ref)}
    os.symlink(scene, tmp_path / "link.png")
    for out in (scene, ref, str(tmp_path / "link.png"), str(tmp_path / "." / "scene.png")):
        with pytest.raises(SystemExit, match="is one of the input images"):
            detect.main(["--scene", scene, "--refs", ref, "--run-dir", str(trained), "--out", out])
    folder = tmp_path / "scenes"
    folder.mkdir()
    Image.open(scene).save(folder / "a.png")
    (folder / detect.OUT_MARKER).write_text("")  # written by an earlier detect.py --out scenes
    with pytest.raises(SystemExit, match="is one of the input images"):
        detect.main(["--scene", str(folder), "--refs", ref, "--run-dir", str(trained), "--out", str(folder)])
    assert {p: open(p, "rb").read() for p in (scene, ref)} == before


def test_a_large_scene_is_worked_at_a_bounded_size_and_answered_in_its_own_pixels(trained, images, tmp_path,
                                                                                   monkeypatch, capsys):
    monkeypatch.setattr(detect, "MAX_IMAGE_SIDE", 192)
    big = tmp_path / "big.png"  # the 384x300 scene at twice its size
    Image.open(images["scene"]).resize((768, 600)).save(big)
    assert detect.read_image(str(big)).shape == (150, 192, 4) and detect.image_size(str(big)) == (768, 600)
    detector = detect.Detector(str(trained), threshold=0)
    found = detector.find(str(big), {"mug": images["refs"]})["mug"]
    assert found["heatmap"].shape == (150, 192)
    boxes = found["boxes"]
    assert len(boxes) and (boxes[:, [0, 2]] <= 768).all() and (boxes[:, [1, 3]] <= 600).all()
    assert boxes[:, 2].max() > 192  # in the file's pixels, not the reduced ones
    out = tmp_path / "found.png"
    cli = detect.main(["--scene", str(big), "--refs", *images["refs"], "--run-dir", str(trained), "--threshold", "0",
                       "--out", str(out)])
    assert [d["box"] for d in cli["objects"][0]["detections"]] == boxes.tolist()
    assert Image.open(out).size == (192, 150)
    assert "768x600, worked at 192x150" in capsys.readouterr().err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)  # Pillow's decompression-bomb guard, met by a small image
    with pytest.raises(SystemExit, match=r"big.png: over 40000 pixels, too large to read safely"):
        detect.main(["--scene", str(big), "--refs", *images["refs"], "--run-dir", str(trained)])


@pytest.mark.parametrize("scales, message", [(["0.5"], "each from 1 to 4"), (["100"], "each from 1 to 4"),
                                             (["2"] * 4, "at most 3 factors")])
def test_the_pyramid_is_bounded(trained, images, scales, message, capsys):
    with pytest.raises(SystemExit) as error:
        detect.main(["--scene", images["scene"], "--refs", *images["refs"], "--run-dir", str(trained),
                     "--pyramid-scales", *scales])
    said = f"{error.value.code} {capsys.readouterr().err}"  # argparse's own line for a scale under 1
    assert message in said or "argument --pyramid-scales: 0.5 is not a number of 1 or more" in said
    with pytest.raises(detect.DataError, match=message):
        detect.Detector(str(trained), pyramid_scales=[float(s) for s in scales])


def test_the_api_names_each_bad_argument(trained, images):
    detector = detect.Detector(str(trained), threshold=0)
    scene = np.asarray(Image.open(images["scene"]))
    view = np.asarray(Image.open(images["refs"][0]))  # (h, w, 4)
    good = detector.embed(images["refs"])
    cases = [
        (lambda: detector.find(scene, {"mug": view}), r"objects\['mug'\]: one image, not a list of views"),
        (lambda: detector.find(scene, {"mug": images["refs"][0]}), r"objects\['mug'\]: one path, not a list"),
        (lambda: detector.find(scene, {}), "objects: give a non-empty dict"),
        (lambda: detector.find(scene, {"mug": []}), "needs at least one reference view"),
        (lambda: detector.find(scene, {"mug": good[:-1]}), rf"an embedding is \({len(good)},\) float"),
        (lambda: detector.find(scene, {"mug": np.full_like(good, np.nan)}), "holds NaN"),
        (lambda: detector.find(np.zeros((0, 0, 3), np.uint8), {"mug": good}), "0x0 pixels"),
        (lambda: detector.find(scene, {"mug": good}, threshold=7), "threshold=7: give a number from 0 to 1"),
        (lambda: detector.find(scene, {"mug": good}, threshold=float("nan")), "threshold=nan"),
        (lambda: detector.find(scene, {"mug": good}, pyramid_scales=[0.5]), "pyramid scales"),
        (lambda: detect.Detector(str(trained), threshold=-1), "threshold=-1"),
        (lambda: detect.Detector(str(trained), nms_iou=5), "nms_iou=5"),
        (lambda: detect.Detector(str(trained), box_score="best"),
         "box_score='best': give one of objectness, geometric"),
        (lambda: detect.Detector(str(trained), nms=0.5), "nms: no inference setting"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_a_folder_with_unreadable_files_skips_them_and_never_hangs(trained, images, tmp_path, capsys):
    folder = tmp_path / "scenes"
    folder.mkdir()
    Image.open(images["scene"]).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"")  # empty
    (folder / "c.jpg").write_text("not an image")
    (folder / "d.png").write_bytes(open(images["scene"], "rb").read()[:200])  # truncated
    os.symlink(tmp_path / "gone.png", folder / "e.png")  # dangling
    (folder / "f.png").mkdir()  # a folder
    os.mkfifo(folder / "g.png")  # opening it would wait for a writer forever
    results = detect.main(["--scene", str(folder), "--refs", *images["refs"], "--run-dir", str(trained),
                           "--threshold", "0"])
    assert [os.path.basename(r["scene"]) for r in results] == ["a.png", "b.png", "c.jpg", "d.png", "e.png", "f.png",
                                                               "g.png"]
    assert results[0]["objects"][0]["detections"] and all("error" in r for r in results[1:])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 6


def test_ctrl_c_in_a_folder_prints_what_is_done_and_one_line(trained, images, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "scenes"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.open(images["scene"]).save(folder / name)
    real_find = detect.Detector.find

    def find(self, scene, *args, **kwargs):
        if find.calls == 2:
            raise KeyboardInterrupt
        find.calls += 1
        return real_find(self, scene, *args, **kwargs)

    find.calls = 0
    monkeypatch.setattr(detect.Detector, "find", find)
    with pytest.raises(SystemExit, match=r"^interrupted: 2 of 3 scenes done \(their detections printed above\)$"):
        detect.main(["--scene", str(folder), "--refs", *images["refs"], "--run-dir", str(trained)])
    assert [os.path.basename(r["scene"]) for r in json.loads(capsys.readouterr().out)] == ["a.png", "b.png"]
