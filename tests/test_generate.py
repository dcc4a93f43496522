import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, generate, tiny_args
from data import SPLITS, Split
from util import DataError

pytestmark = pytest.mark.slow  # every test renders with pybullet


def dataset_bytes(data_dir):
    """{relative path: bytes} of every file of a data dir."""
    out = {}
    for root, _, files in os.walk(data_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, data_dir)] = f.read()
    return out


def test_splits_manifests_and_chunks(tiny_data):
    for split in SPLITS:
        manifest = json.load(open(os.path.join(tiny_data, split, "manifest.json")))
        assert manifest["split"] == split and manifest["seed"] == 0
        assert {"numpy", "pybullet", "python"} <= set(manifest["versions"])
        assert all(len(c["checksum"]) == 64 for c in manifest["chunks"])
    train = Split(tiny_data, "train")
    assert train.num_scenes == 6 and train.object_ids.tolist() == list(range(10))
    assert train.views(3).shape == (6, 64, 64, 4)
    scene = train.scene(5)
    assert scene["rgb"].shape == (128, 128, 3) and scene["box_masks"].shape == (4, 16, 16)
    assert set(scene["obj_ids"].tolist()) <= set(range(10))
    test = Split(tiny_data, "test")
    ids = np.concatenate([test.scene(i)["obj_ids"] for i in range(test.num_scenes)])
    assert set(ids.tolist()) <= set(range(15, 20))


def test_same_bytes_whatever_the_number_of_workers(tiny_data, tmp_path):
    two_workers = generate(tmp_path / "w2", workers=2)
    assert dataset_bytes(two_workers) == dataset_bytes(tiny_data)


def test_shards_render_the_same_dataset_into_one_dir(tiny_data, tmp_path):
    generate(tmp_path / "d", shard_index=1, shard_count=2)
    assert not os.path.exists(tmp_path / "d" / "train" / "manifest.json")  # shard 0's chunks are missing
    generate(tmp_path / "d", shard_index=0, shard_count=2)
    assert dataset_bytes(tmp_path / "d") == dataset_bytes(tiny_data)


def test_other_seed_other_data(tiny_data, tmp_path):
    other = dataset_bytes(generate(tmp_path / "s1", seed=1))
    same = dataset_bytes(tiny_data)
    assert other["train/scenes_0000/rgb.npy"] != same["train/scenes_0000/rgb.npy"]


def test_killed_run_resumes_to_the_same_dataset(tmp_path):
    # one scene per chunk, big enough that the kill lands between chunks
    options = dict(num_train_scenes=8, scenes_per_chunk=1, objects_per_scene=5, instances_per_object=6,
                   scene_size=256, workers=1)
    straight = generate(tmp_path / "straight", **options)
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "generate_data.py"), *tiny_args(killed, **options)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (killed / "train" / "scenes_0001").exists() and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "train" / "manifest.json").exists(), "the run finished before it could be killed"
    assert (killed / "train" / "scenes_0000").exists()
    generate(killed, **options)
    assert dataset_bytes(killed) == dataset_bytes(straight)


def test_corrupted_chunk_is_caught_and_regenerated(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    rgb = data / "train" / "scenes_0001" / "rgb.npy"
    contents = bytearray(rgb.read_bytes())
    contents[-1] ^= 0xFF
    rgb.write_bytes(bytes(contents))
    with pytest.raises(DataError, match=r"scenes_0001 does not match its checksum.*delete that directory"):
        Split(data, "train")
    generate(data)  # a rerun finds the bad chunk and renders it again
    assert dataset_bytes(data) == dataset_bytes(tiny_data)


def test_rerun_with_other_options_is_refused(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    with pytest.raises(DataError, match=r"generated with other options \(num_train_scenes differ"):
        generate(data, num_train_scenes=7)


def test_overlapping_splits_are_refused(tiny_data, tmp_path):
    with pytest.raises(DataError, match="object 9 is in both the train and validation splits"):
        generate(tmp_path / "overlap", validation_ids="9-14")
    data = shutil.copytree(tiny_data, tmp_path / "data")
    path = data / "test" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["object_ids"] = "5-19"  # as if the test split had been made with other flags
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="is in both the train and test splits"):
        Split(data, "validation")


def test_missing_or_incompatible_data_gives_clear_errors(tiny_data, tmp_path):
    with pytest.raises(DataError, match=r"does not exist: make it with `sh generate_split_chunk_data.sh`"):
        Split(tmp_path / "nowhere", "train")
    data = shutil.copytree(tiny_data, tmp_path / "data")
    path = data / "train" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 999
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="format version 999"):
        Split(data, "train")
    path.write_text(json.dumps(manifest)[:100])  # truncated
    with pytest.raises(DataError, match="manifest.json is not valid JSON"):
        Split(data, "train")
    path.unlink()
    with pytest.raises(DataError, match=r"manifest.json is missing .*a rerun carries on"):
        Split(data, "train")


@pytest.mark.parametrize("overrides, message", [
    (dict(workers=0), "argument --workers: 0 is not a positive integer"),
    (dict(scenes_per_chunk=0), "argument --scenes-per-chunk"),
    (dict(views_per_object=0), "argument --views-per-object"),
    (dict(test_ids="5-0"), "--test-ids: object id range '5-0' is empty"),
    (dict(test_ids="5000-5019"), "--test-ids: object id 5000 names no object"),
    (dict(train_ids="0-9,1000-1001"), "--train-ids 0-9,1000-1001 includes everyday meshes: they are held out"),
    (dict(grid_size=15), "must be a multiple of --grid-size 15"),
])
def test_invalid_options_are_refused_before_anything_is_written(tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as error:
        generate(tmp_path / "data", **overrides)
    assert error.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing written: the corrected command is not refused


def test_out_dir_naming_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        generate(tmp_path / "file")
    assert "--out-dir" in capsys.readouterr().err and (tmp_path / "file").read_text() == ""


def test_the_first_failed_chunk_stops_the_run(tmp_path, monkeypatch):
    """No chunk starts after a worker fails (disk full, say): one line, and a rerun carries on."""
    import generate_data

    log = tmp_path / "attempts"
    failing = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('x'); raise SystemExit('No space left on device')"]
    monkeypatch.setattr(generate_data, "WORKER_COMMAND", failing)
    with pytest.raises(DataError, match=r"rendering .* failed \(exit code 1: No space left on device\).*run the same"):
        generate(tmp_path / "data")
    assert len(log.read_text()) == 1  # of the 15 chunks, only the first was tried


def test_ctrl_c_stops_generation_promptly_with_one_line(tmp_path):
    out = tmp_path / "data"
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "generate_data.py"), *tiny_args(out, workers=2)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.time() + 120
    while not (out / "train").exists() or not any(n.startswith("views_") for n in os.listdir(out / "train")):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C does: the whole process group
    _, err = process.communicate(timeout=20)
    assert process.returncode == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: the chunks finished so far are kept")
    finished = sorted(os.listdir(out / "train"))
    time.sleep(3)
    assert sorted(os.listdir(out / "train")) == finished  # no worker rendered on


def children(pid):
    """Linux: the pids of a process's children."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_workers_of_a_killed_run_exit_at_once(tmp_path):
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "generate_data.py"),
                                *tiny_args(tmp_path / "data", workers=2, num_train_scenes=96, scenes_per_chunk=96)],
                               cwd=REPO,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (workers := children(process.pid)):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)  # past the workers' start-up
    process.kill()
    process.wait()

    def alive():
        return [w for w in workers if os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().split()[2] != "Z"]

    # a 96-scene chunk takes several seconds to render: a worker gone within 2 s stopped for its parent (polled,
    # so that a loaded machine's slower exit is not mistaken for a worker rendering on)
    deadline = time.time() + 2
    while alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(), f"workers {alive()} outlived their parent"


@pytest.mark.parametrize("name", ["test", "validation"])
def test_a_shift_split_shows_its_splits_objects_from_outside_the_training_cameras(tiny_data, name):
    from generate_data import SHIFTED_CAMERA

    same, shift = Split(tiny_data, name), Split(tiny_data, f"{name}_shift")  # sharing objects is allowed here
    assert shift.manifest["object_ids"] == same.manifest["object_ids"] and shift.num_scenes == same.num_scenes
    assert shift.manifest["camera"]["distance"] == list(SHIFTED_CAMERA.distance)
    assert same.manifest["camera"]["distance"] == [1.0, 2.0]

    def box_areas(split):
        boxes = np.concatenate([split.scene(i)["boxes"].reshape(-1, 4) for i in range(split.num_scenes)])
        boxes = boxes[boxes[:, 0] >= 0].astype(float)
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    assert np.mean(box_areas(shift)) < 0.7 * np.mean(box_areas(same))  # farther: smaller objects


def test_a_data_dir_made_before_test_shift_is_completed_not_refused(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    newer = ("test_shift", "test_backlit", "test_relit", "test_everyday")  # splits, options added since
    for split in newer:
        shutil.rmtree(data / split)
    config = json.loads((data / "generation.json").read_text())
    old = {k: v for k, v in config.items()
           if "camera" not in k and k != "appearance" and not any(split in k for split in newer)}
    (data / "generation.json").write_text(json.dumps(old))
    generate(data)
    after = dataset_bytes(data)
    assert {k: v for k, v in after.items() if "manifest" not in k and "generation" not in k} == \
        {k: v for k, v in dataset_bytes(tiny_data).items() if "manifest" not in k and "generation" not in k}
    assert json.loads((data / "generation.json").read_text()) == config
    with pytest.raises(DataError, match=r"other options \(camera_distance differ"):  # a real change still is refused
        generate_data_main(["--out-dir", str(data), *tiny_args(data)[2:], "--camera-distance", "1", "3"])


def generate_data_main(argv):
    import generate_data

    generate_data.main(argv)


def test_a_camera_range_upside_down_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        generate_data_main([*tiny_args(tmp_path / "data"), "--camera-pitch", "-60", "-89"])
    assert "--camera-pitch -60 -89: give the lower bound first" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_robustness_splits_render_the_test_objects_under_their_conditions(tiny_data):
    test, backlit, relit, everyday = (Split(tiny_data, s) for s in ("test", "test_backlit", "test_relit",
                                                                    "test_everyday"))
    assert test.manifest["appearance"] == {"scenes": "fixed", "views": "fixed"}
    assert backlit.manifest["appearance"] == {"scenes": "fixed", "views": "backlit"}
    assert relit.manifest["appearance"] == {"scenes": "relit", "views": "fixed"}

    def lit(views):  # mean brightness of the objects' pixels
        return np.mean([v[..., :3][v[..., 3] == 255].mean() for v in views.reshape(-1, 64, 64, 4)])

    assert lit(np.stack([backlit.views(i) for i in backlit.object_ids])) < 0.8 * lit(
        np.stack([test.views(i) for i in test.object_ids]))
    assert backlit.object_ids.tolist() == relit.object_ids.tolist() == list(range(15, 20))
    assert everyday.manifest["object_ids"] == "15-18,1000-1001"  # conftest.TINY's
    scene_ids = np.concatenate([everyday.scene(i)["obj_ids"] for i in range(everyday.num_scenes)])
    assert set(scene_ids.tolist()) <= {15, 16, 17, 18, 1000, 1001} and (scene_ids >= 1000).any()


def test_a_random_appearance_data_dir_with_procedural_objects(tmp_path):
    data = generate(tmp_path / "random", appearance="random", train_ids="0-5,10000-10003", num_test_shift_scenes=0,
                    num_validation_shift_scenes=0, num_test_backlit_scenes=0, num_test_relit_scenes=0,
                    num_test_everyday_scenes=0)
    train = Split(data, "train")
    assert train.manifest["appearance"] == {"scenes": "random", "views": "random"}
    assert train.object_ids.tolist() == [0, 1, 2, 3, 4, 5, 10000, 10001, 10002, 10003]
    assert (train.views(10002)[..., 3] == 255).any(axis=(1, 2)).all()  # every view shows the object
    assert Split(data, "test_backlit").manifest["appearance"] == {"scenes": "random", "views": "backlit"}
