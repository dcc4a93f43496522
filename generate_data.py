"""Renders the train / validation / test splits into chunks, in parallel, resumably.

    python generate_data.py --out-dir data/small --profile small   # ~5 min on 2 cores, 584 MB

Each chunk has its own seed (derived from --seed, the split and the chunk index), so the
output is byte-identical whatever --workers, --out-dir or the caller's environment (within one
installation: docs/data.md), and a killed run that is started again skips the chunks already
written and ends with the same dataset as an uninterrupted one. K machines sharing --out-dir each
render a share of the chunks with --shard-index 0..K-1 --shard-count K; whichever finishes last
writes the manifests.
"""

import argparse
import concurrent.futures
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np
from tqdm import tqdm

from data import (FORMAT_VERSION, SAME_OBJECTS_AS, SPLITS, check_disjoint, chunk_is_valid, format_id_ranges,
                  parse_id_range, stored_checksum, write_chunk)
from render import APPEARANCES, EVERYDAY, FIRST_EVERYDAY, OBJECT_FAMILIES, CameraRanges, Renderer, object_family
from util import DataError, exits_in_one_line, non_negative_int, positive_int, read_json, write_json_atomic

PROFILES = {
    # the CPU demo: smaller scenes to suit the CPU model config
    "small": dict(num_train_scenes=192, num_validation_scenes=48, num_test_scenes=48, views_per_object=24,
                  scene_size=320, grid_size=40),
    # the original's scale
    "full": dict(num_train_scenes=3000, num_validation_scenes=300, num_test_scenes=300, views_per_object=1000,
                 scene_size=640, grid_size=80),
}
KINDS = ("views", "scenes")
EVERYDAY_IDS = f"{FIRST_EVERYDAY}-{FIRST_EVERYDAY + len(EVERYDAY) - 1}"
OWN_IDS = ("train", "validation", "test", "test_everyday")  # the splits with an --*-ids option
# The shift splits' cameras: farther, lower and from every side, outside the ranges above
SHIFT_SPLITS = ("test_shift", "validation_shift")
SHIFTED_CAMERA = CameraRanges(distance=(2.2, 3.0), pitch=(-55.0, -35.0), yaw=(0.0, 360.0))
# How the robustness splits' renders differ from the data's own appearance (--appearance)
SPLIT_APPEARANCES = {"test_backlit": {"views": "backlit"}, "test_relit": {"scenes": "relit"}}
# What a data dir made before these options existed was rendered with: it is completed, not refused
IMPLIED = {**{f"camera_{k}": list(v) for k, v in vars(CameraRanges()).items()}, "appearance": "fixed"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out-dir", required=True, help="data dir to create or complete")
    parser.add_argument("--profile", choices=PROFILES, default="small",
                        help="sizes below left unset take this profile's value: " + "; ".join(
                            f"{name}: {', '.join(f'{k}={v}' for k, v in sizes.items())}"
                            for name, sizes in PROFILES.items()))
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seeds every random choice of the dataset")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count(), help="render processes")
    parser.add_argument("--shard-index", type=non_negative_int, default=0,
                        help="this machine's share of the chunks, 0 first")
    parser.add_argument("--shard-count", type=positive_int, default=1, help="machines rendering into one --out-dir")
    for split, ids in zip(SPLITS, ("0-799", "800-899", "900-999")):
        parser.add_argument(f"--{split}-ids", default=ids, help=f"object ids of the {split} split, inclusive; "
                            f"ranges joined by commas ({OBJECT_FAMILIES})")
    parser.add_argument("--test-everyday-ids", help="object ids of the test_everyday split (default: the first "
                        f"--objects-per-scene test ids and the everyday meshes, {EVERYDAY_IDS})")
    parser.add_argument("--appearance", choices=("fixed", "random"), default="fixed",
                        help="how scenes and references are lit and photographed, every split but test_backlit's "
                        "references and test_relit's scenes: fixed, as the original (one white light, references "
                        "from one side); random, drawn per scene and per view (render.APPEARANCES)")
    for split in SPLITS:
        same = f" (default: as many as the {SAME_OBJECTS_AS[split]} split)" if split in SAME_OBJECTS_AS else ""
        parser.add_argument(f"--num-{split.replace('_', '-')}-scenes", type=non_negative_int,
                            help=f"scenes in the {split} split{same}")
    for prefix, camera, whose in (("", CameraRanges(), "every split but the shift splits"),
                                  ("shift-", SHIFTED_CAMERA, "the test_shift and validation_shift splits")):
        for key, what in (("distance", "metres from the table's centre"), ("pitch", "degrees, -90: straight down"),
                          ("yaw", "degrees around the table")):
            parser.add_argument(f"--{prefix}camera-{key}", type=float, nargs=2, metavar=("LO", "HI"),
                                default=list(getattr(camera, key)), help=f"scene camera range of {whose}: {what}")
    parser.add_argument("--views-per-object", type=positive_int, help="reference views rendered per object")
    parser.add_argument("--scene-size", type=positive_int, help="scene width = height in pixels")
    parser.add_argument("--grid-size", type=positive_int,
                        help="label grid width = height (scene size / 8 in the original)")
    parser.add_argument("--view-size", type=positive_int, default=64, help="reference view width = height in pixels")
    parser.add_argument("--objects-per-scene", type=positive_int, default=16, help="distinct objects per scene (K)")
    parser.add_argument("--instances-per-object", type=positive_int, default=4,
                        help="copies of each object per scene (I)")
    parser.add_argument("--scenes-per-chunk", type=positive_int, default=16, help="scenes per chunk file")
    parser.add_argument("--objects-per-chunk", type=positive_int, default=50, help="objects' views per chunk file")
    args = parser.parse_args(argv)
    for key, value in PROFILES[args.profile].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for split, same in SAME_OBJECTS_AS.items():
        if getattr(args, f"num_{split}_scenes") is None:
            setattr(args, f"num_{split}_scenes", getattr(args, f"num_{same}_scenes"))
    if args.test_everyday_ids is None:
        try:
            test_ids = parse_id_range(args.test_ids)[:args.objects_per_scene]
        except ValueError as error:
            parser.error(f"--test-ids: {error}")
        args.test_everyday_ids = f"{format_id_ranges(test_ids)},{EVERYDAY_IDS}"
    for key, value in vars(args).items():
        if "camera_" in key and value[0] > value[1]:
            parser.error(f"--{key.replace('_', '-')} {value[0]:g} {value[1]:g}: give the lower bound first")
    if not 0 <= args.shard_index < args.shard_count:
        parser.error(f"--shard-index {args.shard_index} must be in 0..{args.shard_count - 1} (--shard-count "
                     f"{args.shard_count})")
    if args.scene_size % args.grid_size:
        parser.error(f"--scene-size {args.scene_size} must be a multiple of --grid-size {args.grid_size}")
    for split in SPLITS:
        if split not in OWN_IDS:
            continue
        text = getattr(args, f"{split}_ids")
        try:
            ids = parse_id_range(text)
            families = {object_family(obj_id) for obj_id in ids}
        except ValueError as error:
            parser.error(f"--{split.replace('_', '-')}-ids: {error}")
        if split == "train" and "everyday" in families:
            parser.error(f"--train-ids {text} includes everyday meshes: they are held out, to evaluate on only "
                         f"({OBJECT_FAMILIES})")
        if len(ids) < args.objects_per_scene:
            parser.error(f"--{split}-ids {text} has fewer objects than --objects-per-scene {args.objects_per_scene}")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        parser.error(f"--out-dir {args.out_dir} is a file: give a directory")
    return args


def generation_config(args):
    """What the data depends on (not where or by whom it is rendered): recorded and checked on reruns."""
    config = {k: v for k, v in vars(args).items() if k not in ("out_dir", "workers", "shard_index", "shard_count")}
    config["format_version"] = FORMAT_VERSION
    return config


def split_ids(config, split):
    """The object-id range text of a split."""
    return config[f"{split if split in OWN_IDS else SAME_OBJECTS_AS.get(split, split)}_ids"]


def split_appearances(config, split):
    """{"scenes": name, "views": name} of render.APPEARANCES a split is rendered with."""
    return {"scenes": config["appearance"], "views": config["appearance"], **SPLIT_APPEARANCES.get(split, {})}


def scene_camera(config, split):
    prefix = "shift_" if split in SHIFT_SPLITS else ""
    return CameraRanges(**{k: tuple(config[f"{prefix}camera_{k}"]) for k in ("distance", "pitch", "yaw")})


def plan_chunks(config):
    """Every chunk of every split: dicts with split, kind, index, name and the ids it covers."""
    chunks = []
    for split in SPLITS:
        ids = list(parse_id_range(split_ids(config, split)))
        per = config["objects_per_chunk"]
        for index, start in enumerate(range(0, len(ids), per)):
            chunks.append(dict(split=split, kind="views", index=index, obj_ids=ids[start:start + per]))
        per, total = config["scenes_per_chunk"], config[f"num_{split}_scenes"]
        for index, start in enumerate(range(0, total, per)):
            chunks.append(dict(split=split, kind="scenes", index=index, count=min(per, total - start)))
    for chunk in chunks:
        chunk["name"] = f"{chunk['kind']}_{chunk['index']:04d}"
    return chunks


def chunk_rng(config, chunk):
    return np.random.default_rng([config["seed"], SPLITS.index(chunk["split"]), KINDS.index(chunk["kind"]),
                                  chunk["index"]])


def render_chunk(config, chunk):
    """Renders one chunk -> {name: array}."""
    renderer = Renderer()
    rng = chunk_rng(config, chunk)
    appearance = APPEARANCES[split_appearances(config, chunk["split"])[chunk["kind"]]]
    if chunk["kind"] == "views":
        views = np.stack([np.stack([renderer.reference_view(obj_id, rng, config["view_size"], appearance)
                                    for _ in range(config["views_per_object"])])
                          for obj_id in chunk["obj_ids"]])  # (M, V, h, w, 4) uint8
        arrays = dict(views=views, obj_ids=np.asarray(chunk["obj_ids"], dtype=np.int16))
    else:
        ids = np.asarray(parse_id_range(split_ids(config, chunk["split"])))
        camera = scene_camera(config, chunk["split"])
        scenes = []
        for _ in range(chunk["count"]):
            obj_ids = rng.choice(ids, size=config["objects_per_scene"], replace=False)
            rgb, labels = renderer.scene(obj_ids, rng, config["scene_size"], config["grid_size"],
                                         config["instances_per_object"], camera, appearance)
            scenes.append(dict(rgb=rgb, **vars(labels)))
        arrays = {key: np.stack([s[key] for s in scenes]) for key in scenes[0]}  # (S, ...)
    renderer.close()
    return arrays


# Bullet's results depend on the heap layout of the process it runs in (docs/data.md), so each
# chunk renders in a fresh process whose state before rendering is the same whatever the run: a
# fixed command, working dir, environment and job; where the chunk goes is sent only once it is
# rendered.
WORKER_COMMAND = [sys.executable, "-I", "-c",
                  "import sys; sys.path.insert(0, '.'); import generate_data; generate_data.worker_main()"]
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
REPO_DIR = os.path.dirname(os.path.abspath(__file__))


def exit_with_parent():
    """Linux: the kernel kills this process when the one that started it dies (a killed run's
    workers stop at once instead of rendering on)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):  # not Linux: such a worker finishes its chunk and writes nothing
        return
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


def worker_main():
    """A render process: a JSON job (config, chunk) on stdin, "rendered" on stdout, then the
    chunk's path on stdin, where the chunk is written atomically."""
    exit_with_parent()
    config, chunk = json.loads(sys.stdin.readline())
    arrays = render_chunk(config, chunk)
    print("rendered", flush=True)
    path = sys.stdin.readline().strip()
    if path:  # no path: the parent is gone (a killed run), nothing is written
        write_chunk(path, arrays)
        print("written", flush=True)


RUNNING = set()  # worker processes in flight, killed when a run stops early
RUNNING_LOCK = threading.Lock()
STOPPING = threading.Event()


def stop_workers():
    with RUNNING_LOCK:
        STOPPING.set()
        for process in RUNNING:
            process.kill()


def run_worker(config, chunk, path):
    """Renders and writes one chunk in a fresh worker process (called from a thread)."""
    with tempfile.TemporaryFile("w+") as errors:  # a file, so that a chatty worker never blocks on it
        with RUNNING_LOCK:
            if STOPPING.is_set():
                raise DataError("stopped")
            process = subprocess.Popen(WORKER_COMMAND, cwd=REPO_DIR, env=WORKER_ENV, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=errors, text=True)
            RUNNING.add(process)
        process.stdin.write(json.dumps([config, chunk]) + "\n")
        process.stdin.flush()
        for line in process.stdout:  # pybullet may print its own lines first
            if line.strip() == "rendered":
                process.stdin.write(path + "\n")
                process.stdin.flush()
                break
        process.stdin.close()
        out = process.stdout.read()
        process.wait()
        with RUNNING_LOCK:
            RUNNING.discard(process)
        if process.returncode != 0 or "written" not in out:
            errors.seek(0)
            last = ([line for line in errors.read().splitlines() if line.strip()] or ["no message"])[-1]
            raise DataError(f"rendering {path} failed (exit code {process.returncode}: {last.strip()}); the chunks "
                            "finished so far are kept: fix the cause and run the same command again to carry on")
    return chunk


def render_code_sha256():
    """Of the modules a render worker runs: Bullet's results depend (rarely) on the worker's heap
    layout, so on them too (docs/data.md)."""
    digest = hashlib.sha256()
    for module in ("render.py", "data.py", "generate_data.py"):
        with open(os.path.join(REPO_DIR, module), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def manifest_for(config, split, chunks, split_dir):
    ids = list(parse_id_range(split_ids(config, split)))
    entries = [dict(name=c["name"], kind=c["kind"], checksum=stored_checksum(os.path.join(split_dir, c["name"])),
                    count=len(c["obj_ids"]) if c["kind"] == "views" else c["count"]) for c in chunks]
    s, g, v = config["scene_size"], config["grid_size"], config["view_size"]
    k, i = config["objects_per_scene"], config["instances_per_object"]
    return {
        "format_version": FORMAT_VERSION,
        "split": split,
        "object_ids": split_ids(config, split),
        "camera": vars(scene_camera(config, split)),
        "appearance": split_appearances(config, split),
        "num_objects": len(ids),
        "num_scenes": config[f"num_{split}_scenes"],
        "views_per_object": config["views_per_object"],
        "objects_per_scene": k,
        "instances_per_object": i,
        "arrays": {  # per item: views per object, the rest per scene
            "views": {"shape": [config["views_per_object"], v, v, 4], "dtype": "uint8"},
            "rgb": {"shape": [s, s, 3], "dtype": "uint8"},
            "obj_ids": {"shape": [k], "dtype": "int16"},
            "box_masks": {"shape": [k, g, g], "dtype": "uint8"},
            "visible_masks": {"shape": [k, g, g], "dtype": "uint8"},
            "boxes": {"shape": [k, i, 4], "dtype": "int16", "note": "x0, y0, x1, y1 pixels; -1 if not visible"},
            "pixel_counts": {"shape": [k, i], "dtype": "int32"},
        },
        "generation": config,
        "seed": config["seed"],
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "pybullet": importlib.metadata.version("pybullet"), "render_code_sha256": render_code_sha256()},
        "chunks": entries,
    }


def prepare_out_dir(out_dir, config, own_chunks):
    """Creates the data dir, or checks that an existing one was made with the same options; clears
    what a killed run left of own_chunks (other shards may be writing theirs)."""
    path = os.path.join(out_dir, "generation.json")
    if os.path.exists(path):
        # options added since the dir was made: its chunks were rendered as their implied values say,
        # and a new split is simply rendered beside them
        previous = {**{k: config[k] for k in config if k not in IMPLIED}, **IMPLIED, **read_json(path)}
        if previous != config:
            changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            raise DataError(f"{out_dir} was generated with other options ({', '.join(changed)} differ, see "
                            f"{path}): use another --out-dir, or delete {out_dir} to start over")
    for split in SPLITS:
        split_dir = os.path.join(out_dir, split)
        os.makedirs(split_dir, exist_ok=True)
        own = {c["name"] for c in own_chunks if c["split"] == split}
        for name in os.listdir(split_dir):
            if name.startswith(".") and ".tmp-" in name and name[1:].split(".tmp-")[0] in own:
                shutil.rmtree(os.path.join(split_dir, name), ignore_errors=True)
    write_json_atomic(path, config)


def main(argv=None):
    args = parse_args(argv)
    config = generation_config(args)
    check_disjoint([{"split": s, "object_ids": split_ids(config, s)} for s in SPLITS])
    chunks = plan_chunks(config)
    own_chunks = chunks[args.shard_index::args.shard_count]
    prepare_out_dir(args.out_dir, config, own_chunks)

    def path_of(chunk):
        return os.path.join(args.out_dir, chunk["split"], chunk["name"])

    todo = []
    for chunk in own_chunks:
        if os.path.exists(path_of(chunk)) and not chunk_is_valid(path_of(chunk)):
            print(f"re-rendering {path_of(chunk)}: it does not match its checksum", file=sys.stderr)
            shutil.rmtree(path_of(chunk))
        if not os.path.exists(path_of(chunk)):
            todo.append(chunk)
    todo.sort(key=lambda c: c["kind"] != "scenes")  # slowest first, for an even finish across workers
    shard = f" (shard {args.shard_index} of {args.shard_count})" if args.shard_count > 1 else ""
    print(f"{len(own_chunks) - len(todo)} of {len(own_chunks)} chunks{shard} already in {args.out_dir}; rendering "
          f"{len(todo)} with {args.workers} workers")
    pool = concurrent.futures.ThreadPoolExecutor(args.workers)
    STOPPING.clear()
    try:
        with tqdm(total=len(todo), unit="chunk", desc="rendering") as bar:
            for future in concurrent.futures.as_completed([pool.submit(run_worker, config, chunk, path_of(chunk))
                                                           for chunk in todo]):
                future.result()
                bar.update()
    except BaseException:  # the first failed chunk, or Ctrl-C: no chunk is started after it
        pool.shutdown(wait=False, cancel_futures=True)
        stop_workers()
        raise
    pool.shutdown()

    # Each shard looks only after writing its own chunks, so of two finishing together at least one
    # sees all chunks present; both writing the same manifest atomically is harmless.
    missing = [c for c in chunks if not os.path.exists(path_of(c))]
    if missing:
        print(f"{len(missing)} chunks of other shards are not in {args.out_dir} yet: the last shard to finish "
              "(or any rerun once all are done) writes the manifests")
        return
    for split in SPLITS:
        split_chunks = [c for c in chunks if c["split"] == split]
        split_dir = os.path.join(args.out_dir, split)
        manifest = manifest_for(config, split, split_chunks, split_dir)
        write_json_atomic(os.path.join(split_dir, "manifest.json"), manifest)
    print(f"wrote {', '.join(SPLITS)} to {args.out_dir}")


if __name__ == "__main__":
    with exits_in_one_line("interrupted: the chunks finished so far are kept; run the same command again to carry on"):
        main()
