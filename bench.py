"""Benchmarks, printed as a table and written as JSON.

    python bench.py loader                       # ~10 s on 2 cores: episodes/s of one loader process
    python bench.py train --model-config cpu     # ~30 s: s/step, GFLOP/s, input wait of the train step
    python bench.py train --model-config seed    # ~2 min: the same at the original's sizes
    python bench.py train --workload original    # ~3 min: exactly the original's step (below)
    python bench.py inference                    # ~20 s: queries/s, scene pass shared by 16 objects or not
    python bench.py latency                      # ~1 min: per frame, JAX and onnxruntime side by side

`train` runs the real loop (loader, prefetch, jitted step) on synthetic data of the config's
scene size and reports XLA's own FLOP count of the compiled step. `--workload yolz` times yolz's
own defaults (C=16 objects + K=4 absent, N=4 views, a box head); `--workload original` the
original's step exactly: the seed config, C=16, N=8, no absent queries, no box head, one
640x640 scene per step, the embedding added once (no FiLM), batch norm over each object's views,
the contrastive loss summed, plain BCE, adam.

`latency` times detect.Detector as a user runs it, each backend in processes of its own: the
JAX run and its ONNX export (export.py; made in a temp dir unless --export-dir names one).

`loader` times EpisodeLoader at the original's sizes (C=16 objects, N=8 anchor + 8 positive
views, 640x640 scenes). Its cost depends on array shapes only, not on what they show, so unless
--data-dir names a rendered dataset it times a synthetic one written in the real chunk layout
(random pixels, rendering 1000 views per object would take hours). Data is read through the
page cache as in training, after one warm-up pass.
"""

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from data import EpisodeLoader, Split, prefetch, write_chunk
from generate_data import generation_config, manifest_for, parse_args as generation_args, plan_chunks
from util import huge_pages_env, write_json_atomic


def synthetic_dataset(out_dir, num_scenes, num_objects, views_per_object, profile="full", seed=0):
    """A train split of random arrays in the layout generate_data.py writes, at a profile's sizes."""
    args = generation_args(["--out-dir", out_dir, "--profile", profile, "--train-ids", f"0-{num_objects - 1}",
                            "--num-train-scenes", str(num_scenes), "--views-per-object", str(views_per_object)])
    config = generation_config(args)
    rng = np.random.default_rng(seed)
    s, g, v = config["scene_size"], config["grid_size"], config["view_size"]
    k, i = config["objects_per_scene"], config["instances_per_object"]
    split_dir = os.path.join(out_dir, "train")
    os.makedirs(split_dir)
    chunks = [c for c in plan_chunks(config) if c["split"] == "train"]
    for chunk in chunks:
        path = os.path.join(split_dir, chunk["name"])
        if chunk["kind"] == "views":
            m = len(chunk["obj_ids"])
            write_chunk(path, dict(views=rng.integers(0, 256, (m, views_per_object, v, v, 4), dtype=np.uint8),
                                   obj_ids=np.asarray(chunk["obj_ids"], dtype=np.int16)))
        else:
            n = chunk["count"]
            write_chunk(path, dict(
                rgb=rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
                obj_ids=np.stack([rng.choice(num_objects, k, replace=False) for _ in range(n)]).astype(np.int16),
                box_masks=rng.integers(0, 2, (n, k, g, g), dtype=np.uint8),
                visible_masks=rng.integers(0, 2, (n, k, g, g), dtype=np.uint8),
                boxes=np.sort(rng.integers(0, s, (n, k, i, 2, 2), dtype=np.int16), axis=-2).reshape(n, k, i, 4),
                pixel_counts=rng.integers(0, 1000, (n, k, i), dtype=np.int32)))
    write_json_atomic(os.path.join(split_dir, "manifest.json"), manifest_for(config, "train", chunks, split_dir))
    return out_dir


def time_episodes(iterator, count):
    next(iterator)  # the first item starts the prefetch thread
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - start)


def bench_loader(args):
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or synthetic_dataset(tmp, num_scenes=64, num_objects=200, views_per_object=32)
        split = Split(data_dir, "train")
        loader = EpisodeLoader(split, num_objects=16, num_views=8, seed=0, training=True)
        augmenting = EpisodeLoader(split, num_objects=16, num_views=8, seed=0, training=True, photometric=True)
        time_episodes(loader.batches(1), split.num_scenes)  # warm the page cache
        rows = []
        for name, make in (("episode() in a loop", lambda: loader.batches(1)),
                           ("with background prefetch", lambda: prefetch(loader.batches(1))),
                           ("with --photometric, in a loop", lambda: augmenting.batches(1))):
            rows.append({"loader": name, "episodes_per_s": round(time_episodes(make(), args.episodes), 1)})
        episode = loader.episode(0)
    mb = sum(v.nbytes for v in episode.values()) / 1e6
    result = {"benchmark": "loader", "C": 16, "N": 8, "scene": list(episode["scene"].shape),
              "episode_MB": round(mb, 2), "data": args.data_dir or "synthetic, full-profile shapes",
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "rows": rows}
    print(f"loader at C=16, N=8, scene {episode['scene'].shape}, {mb:.1f} MB per episode")
    print("| loader | episodes/s |\n|---|---|")
    for row in rows:
        print(f"| {row['loader']} | {row['episodes_per_s']} |")
    return result


def cpu_peak_gflops(flops_per_cycle):
    """Theoretical FP32 peak: cores x clock (from /proc/cpuinfo) x FLOP per cycle per core."""
    with open("/proc/cpuinfo") as f:
        mhz = next(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz"))
    return os.cpu_count() * mhz / 1e3 * flops_per_cycle


def matmul_gflops(size=2048, repeats=10):
    """FP32 GFLOP/s XLA reaches on a large square matmul: the attainable peak, measured."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(f(a))
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


WORKLOADS = {  # model config -> the Hyperparameters a workload sets
    "yolz": lambda model_config: dict(model_config=model_config),
    # every flag of the original's recipe that changes what a step computes, today's defaults included
    "original": lambda model_config: dict(model_config="seed", num_objects=16, num_views=8, absent_queries_per_scene=0,
                                          num_priors=0, optimizer="adam", schedule="constant", warmup_steps=0,
                                          matching="add", embedding_batch_norm="object", contrastive_reduction="sum",
                                          focal_gamma=0.0, focal_alpha=0.5, crop_references=0.0),
}


def bench_train(args):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import distributed
    import train
    from hyperparameters import Hyperparameters
    from models import enable_compilation_cache, model_state

    enable_compilation_cache()
    workload = WORKLOADS[args.workload](args.model_config)
    options = Hyperparameters(scenes_per_step=args.scenes_per_step, **workload)
    distributed.check_batch_size(options.scenes_per_step)
    mesh = distributed.batch_mesh()
    profile = {320: "small", 640: "full"}[train.MODEL_CONFIGS[options.model_config].scene_size]
    with tempfile.TemporaryDirectory() as tmp:
        split = Split(synthetic_dataset(tmp, 32, 100, 24, profile), "train")
        models = train.build(options, split)
        config, optimizer = models.config, train.make_optimizer(options)
        loader = EpisodeLoader(split, options.num_objects, options.num_views, seed=0, training=True,
                               num_absent=options.absent_drawn)
        batches = train.device_batches(loader, options.scenes_per_step, mesh)
        params, nt_params = model_state(models)
        params, nt_params, opt_state = distributed.replicate((params, nt_params, optimizer.init(params)), mesh)
        static = (models, options, optimizer)  # train_step's static arguments

        batch = next(batches)
        start = time.perf_counter()
        compiled = train.train_step.lower(params, nt_params, opt_state, batch, *static).compile()
        compile_s = time.perf_counter() - start
        cost = compiled.cost_analysis()
        # per device once the step is partitioned: the whole step's is devices x that
        flops = (cost[0] if isinstance(cost, list) else cost)["flops"] * jax.device_count()
        params, nt_params, opt_state, metrics = train.train_step(params, nt_params, opt_state, batch, *static)
        jax.block_until_ready(metrics)
        wait, start = 0.0, time.perf_counter()
        for _ in range(args.steps):
            t = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t
            params, nt_params, opt_state, metrics = train.train_step(params, nt_params, opt_state, batch, *static)
            loss = float(metrics["loss"])  # the train loop reads the loss every step, so do the same
        elapsed = time.perf_counter() - start
        top_ops = (profile_step(lambda: train.train_step(params, nt_params, opt_state, batch, *static))
                   if args.profile else None)
    s_per_step = elapsed / args.steps
    peak = cpu_peak_gflops(args.flops_per_cycle) if jax.default_backend() == "cpu" else float("nan")
    matmul = matmul_gflops()
    result = {"benchmark": "train", "workload": args.workload, "model_config": options.model_config,
              "scene_size": config.scene_size,
              "C": options.num_objects, "K": options.absent_queries_per_scene, "N": options.num_views,
              "priors": len(config.priors), "B": options.scenes_per_step,
              "compile_s": round(compile_s, 1), "s_per_step": round(s_per_step, 4),
              "scenes_per_s": round(options.scenes_per_step / s_per_step, 2),
              "gflop_per_step": round(flops / 1e9, 2), "gflop_per_s": round(flops / 1e9 / s_per_step, 1),
              "fraction_of_peak_fp32": round(flops / 1e9 / s_per_step / peak, 3),
              "peak_fp32_gflop_per_s": round(peak, 1), "matmul_gflop_per_s": round(matmul, 1),
              "fraction_of_matmul": round(flops / 1e9 / s_per_step / matmul, 3),
              "input_wait_fraction": round(wait / elapsed, 4),
              "peak_rss_MB": round(peak_rss_mb()), "devices": jax.device_count(), "backend": jax.default_backend(),
              "xla_flags": os.environ.get("XLA_FLAGS", ""), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
              "final_loss": loss,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    print("| " + " | ".join(result) + " |\n|" + "---|" * len(result))
    print("| " + " | ".join(str(v) for v in result.values()) + " |")
    if top_ops:
        kinds = collections.defaultdict(lambda: [0.0, 0])
        for row in top_ops:  # convolution.12 -> convolution
            kind = kinds[row["op"].rsplit(".", 1)[0] if row["op"].rsplit(".", 1)[-1].isdigit() else row["op"]]
            kind[0] += row["ms_per_step"]
            kind[1] += 1
        result["op_kinds"] = {k: {"ms_per_step": round(ms, 1), "ops": n} for k, (ms, n) in kinds.items()}
        result["top_ops"] = top_ops[:30]
        busy = sum(row["ms_per_step"] for row in top_ops)
        print(f"\nwhere a step's time goes (3 profiled steps; XLA:CPU ops busy {busy:.0f} ms of the "
              f"{1e3 * s_per_step:.0f} ms step), by kind of HLO op:\n"
              "| kind | ops | ms/step | share |\n|---|---|---|---|")
        for kind, (ms, n) in sorted(kinds.items(), key=lambda item: -item[1][0])[:10]:
            print(f"| {kind} | {n} | {ms:.1f} | {ms / busy:.1%} |")
        print("the longest single ops:\n| op | ms/step | share |\n|---|---|---|")
        for row in top_ops[:8]:
            print(f"| {row['op']} | {row['ms_per_step']} | {row['share']:.1%} |")
    return result


def profile_step(call, steps=3):
    """Runs call() `steps` times under jax.profiler and sums the time of each XLA op (thunk) ->
    [{op, ms_per_step, share}], longest first. The ops of a compiled step are its HLO
    instructions: convolution.N, fusion.N, ..."""
    import glob
    import gzip

    import jax

    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(steps):
                jax.block_until_ready(call())
        path, = glob.glob(os.path.join(tmp, "**", "perfetto_trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    runtime = ("$", "Pjit", "PjRt", "Common", "ThunkExecutor", "Threadpool", "Handle", "Wait", "Allocate",
               "ParseArguments", "PythonRefManager", "end: ")
    total = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith(runtime) and "::" not in event["name"]:
            total[event["name"]] += event.get("dur", 0) / 1e3 / steps  # ms per step
    everything = sum(total.values())
    return [{"op": op, "ms_per_step": round(ms, 2), "share": round(ms / everything, 4)}
            for op, ms in total.most_common()]


def bench_generate(args):
    """Scenes/s and reference views/s of generate_data.py (worker processes included), 1 worker and all."""
    import generate_data

    common = ["--profile", args.profile, "--train-ids", "0-49", "--validation-ids", "50-65", "--test-ids", "66-81"]
    views = ["--num-train-scenes", "0", "--num-validation-scenes", "0", "--num-test-scenes", "0",
             "--objects-per-chunk", "10"]
    scenes = ["--num-train-scenes", str(args.scenes), "--num-validation-scenes", "0", "--num-test-scenes", "0",
              "--views-per-object", "1", "--scenes-per-chunk", "4"]
    rows = []
    for workers in sorted({1, os.cpu_count()}):
        for appearance in ("fixed", "random"):  # side by side: domain randomisation's cost
            row = {"workers": workers, "appearance": appearance}
            for kind, extra in (("views", views), ("scenes", scenes)):
                with tempfile.TemporaryDirectory() as tmp:
                    argv = ["--out-dir", tmp, "--appearance", appearance, *common, *extra]
                    config = generate_data.generation_config(generate_data.parse_args(argv))
                    count = (82 * config["views_per_object"]) if kind == "views" else args.scenes
                    start = time.perf_counter()
                    generate_data.main([*argv, "--workers", str(workers)])
                    row[f"{kind}_per_s"] = round(count / (time.perf_counter() - start), 2)
            rows.append(row)
    result = {"benchmark": "generate", "profile": args.profile, "scenes": args.scenes, "views": 82 * 24,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "rows": rows}
    print(f"generate_data.py, {args.profile} profile sizes ({args.scenes} scenes; 82 objects x their views), "
          "worker start-up included\n| workers | --appearance | scenes/s | reference views/s |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['workers']} | {row['appearance']} | {row['scenes_per_s']} | {row['views_per_s']} |")
    return result


def bench_inference(args):
    """Queries/s for one scene and C objects: one scene pass for all C against one pass per object."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    from models import enable_compilation_cache, find_in_scene, load_run

    enable_compilation_cache()
    run = load_run(args.run_dir)
    config = run.config
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (config.scene_size, config.scene_size, 3), dtype=np.uint8)
    embeddings = rng.normal(size=(args.num_objects, config.embedding_dim)).astype(np.float32)

    def timed(call, repeats):
        jax.block_until_ready(call())  # compiles
        start = time.perf_counter()
        for _ in range(repeats):
            jax.block_until_ready(call())
        return (time.perf_counter() - start) / repeats

    shared = timed(lambda: find_in_scene(run.params, run.nt_params, scene, embeddings, run.models), args.repeats)
    apart = timed(lambda: [find_in_scene(run.params, run.nt_params, scene, e[None], run.models) for e in embeddings],
                  args.repeats)
    c = args.num_objects
    result = {"benchmark": "inference", "run_dir": args.run_dir, "scene_size": config.scene_size, "C": c,
              "shared_scene_pass_queries_per_s": round(c / shared, 1),
              "one_pass_per_object_queries_per_s": round(c / apart, 1), "speedup": round(apart / shared, 2),
              "backend": jax.default_backend(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    print(f"one {config.scene_size}x{config.scene_size} scene, {c} objects (embeddings given):")
    print("| scene model calls | queries/s |\n|---|---|")
    print(f"| 1 for all {c} objects | {result['shared_scene_pass_queries_per_s']} |")
    print(f"| 1 per object | {result['one_pass_per_object_queries_per_s']} |")
    return result


LATENCY_OBJECTS, LATENCY_VIEWS = (1, 4, 16), (1, 4, 16)


def bench_latency(args):
    """JAX and onnxruntime side by side, each backend in processes of its own: detect.py's start-up
    (process start to the first boxes printed) and peak memory, then per-frame latency of one scene
    with C objects whose embeddings are cached (Detector.find end to end, and the scene pass alone)
    and of embedding N views; the FLOPs of a frame's scene pass (XLA's count) and the fraction of the
    CPU's FP32 peak each backend reaches with it."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        export_dir = args.export_dir
        if export_dir is None:
            export_dir = os.path.join(tmp, "onnx")
            subprocess.run([sys.executable, "export.py", args.run_dir, export_dir], check=True)
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(os.path.join(tmp, "scene.png"))
        refs = [os.path.join(tmp, f"ref{i}.png") for i in range(4)]
        for path in refs:
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path)
        rows = {}
        for backend, run_dir in (("jax", args.run_dir), ("onnx", export_dir)):
            detect = [sys.executable, "detect.py", "--backend", backend, "--run-dir", run_dir,
                      "--scene", os.path.join(tmp, "scene.png"), "--refs", *refs]
            starts = [child_seconds_and_peak_mb(detect) for _ in range(args.startups)]
            worker = subprocess.run([sys.executable, "bench.py", "latency", "--worker", backend, "--run-dir", run_dir,
                                     "--repeats", str(args.repeats), *(["--profile"] if args.profile else [])],
                                    check=True, capture_output=True, text=True)
            rows[backend] = {"startup_s": round(float(np.median([s for s, _ in starts])), 2),
                             "detect_peak_rss_MB": round(max(m for _, m in starts)),
                             **json.loads(worker.stdout.splitlines()[-1])}
    flops = rows["jax"].pop("gflop_per_frame")
    peak = cpu_peak_gflops(args.flops_per_cycle)
    for row in rows.values():
        for c, gflop in flops.items():
            row["scene_pass"][c]["fraction_of_peak_fp32"] = round(gflop / (row["scene_pass"][c]["p50_ms"] / 1e3) / peak,
                                                                  3)
    result = {"benchmark": "latency", "run_dir": args.run_dir, "backends": rows, "gflop_per_frame": flops,
              "peak_fp32_gflop_per_s": round(peak, 1), "repeats": args.repeats,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    print(f"one scene, C objects with cached embeddings ({args.repeats} frames each; ms p50 / p95):")
    print("| | " + " | ".join(f"C={c} frame | C={c} scene pass" for c in flops) + " |\n|---|" + "---|---|" * len(flops))
    for backend, row in rows.items():
        print(f"| {backend} | " + " | ".join(
            f"{row['frame'][c]['p50_ms']} / {row['frame'][c]['p95_ms']} | {row['scene_pass'][c]['p50_ms']} / "
            f"{row['scene_pass'][c]['p95_ms']} ({row['scene_pass'][c]['fraction_of_peak_fp32']:.1%} of peak)"
            for c in flops) + " |")
    print("embedding N views (ms p50 / p95), start-up and memory:")
    print("| | " + " | ".join(f"N={n}" for n in LATENCY_VIEWS) + " | detect.py start to boxes | peak RSS |\n|---|"
          + "---|" * (len(LATENCY_VIEWS) + 2))
    for backend, row in rows.items():
        print(f"| {backend} | " + " | ".join(f"{row['embed'][str(n)]['p50_ms']} / {row['embed'][str(n)]['p95_ms']}"
                                             for n in LATENCY_VIEWS)
              + f" | {row['startup_s']} s | {row['detect_peak_rss_MB']} MB |")
    print(f"GFLOP per frame: {flops}; CPU FP32 peak {peak:.0f} GFLOP/s")
    if "onnx_op_kinds" in rows["onnx"]:
        print(f"where onnxruntime's C={LATENCY_OBJECTS[-1]} scene pass goes, by op type:\n| op | nodes | ms | share |\n"
              "|---|---|---|---|")
        for kind, row in list(rows["onnx"]["onnx_op_kinds"].items())[:10]:
            print(f"| {kind} | {row['nodes']} | {row['ms_per_run']} | {row['share']:.1%} |")
    return result


def child_seconds_and_peak_mb(command):
    """Runs a command -> (its wall seconds, its own peak resident memory in MB)."""
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        child = subprocess.Popen(command, stdout=quiet, stderr=quiet)
        _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise RuntimeError(f"{' '.join(command)} failed (status {status})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def latency_worker(args):
    """One backend's latencies (bench_latency's), printed as a JSON line."""
    from detect import Detector

    detector = Detector(args.run_dir, args.worker)
    config = detector.config
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (config.scene_size, config.scene_size, 3), dtype=np.uint8)
    views = [rng.integers(0, 256, (config.view_size, config.view_size, 4), dtype=np.uint8) for _ in range(16)]

    def percentiles(call):
        call()  # a first call compiles (jax) or allocates (onnxruntime)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return {"p50_ms": round(1e3 * float(np.percentile(times, 50)), 2),
                "p95_ms": round(1e3 * float(np.percentile(times, 95)), 2)}

    result = {"frame": {}, "scene_pass": {}, "embed": {}}
    for c in LATENCY_OBJECTS:
        objects = {f"object {i}": detector.embed(views[i:i + 1]) for i in range(c)}
        embeddings = np.stack(list(objects.values()))[None]
        result["frame"][c] = percentiles(lambda: detector.find(scene, objects))
        # the scene is already the model's size and opaque: what find's letterbox hands the model
        result["scene_pass"][c] = percentiles(lambda: detector.model.find(scene[None], embeddings))
    for n in LATENCY_VIEWS:
        result["embed"][n] = percentiles(lambda: detector.embed(views[:n]))
    if args.worker == "onnx" and args.profile:
        result["onnx_op_kinds"] = onnx_op_kinds(os.path.join(args.run_dir, "scene.onnx"), scene, embeddings[0])
    if args.worker == "jax":
        from models import find_in_scenes
        run = detector.model
        result["gflop_per_frame"] = {}
        for c in LATENCY_OBJECTS:
            embeddings = np.zeros((1, c, config.embedding_dim), np.float32)
            compiled = find_in_scenes.lower(run.params, run.nt_params, scene[None], embeddings, run.models).compile()
            cost = compiled.cost_analysis()
            result["gflop_per_frame"][c] = round((cost[0] if isinstance(cost, list) else cost)["flops"] / 1e9, 3)
    print(json.dumps(result))
    return result


def onnx_op_kinds(path, scene, embeddings, runs=20):
    """onnxruntime's profile of a scene graph on one scene and (C, E) embeddings -> {op type: {ms
    per run, nodes, share}}, longest first: where its time goes, for comparison with XLA's fusions."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling, options.log_severity_level = True, 3
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, {"scene": scene, "embeddings": embeddings})
        with open(session.end_profiling()) as f:
            events = json.load(f)
    kinds = collections.defaultdict(lambda: [0.0, 0])
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kind = kinds[event["args"]["op_name"]]
            kind[0] += event["dur"] / 1e3 / runs
            kind[1] += 1
    total = sum(ms for ms, _ in kinds.values())
    return {k: {"ms_per_run": round(ms, 2), "nodes": n // runs, "share": round(ms / total, 3)}
            for k, (ms, n) in sorted(kinds.items(), key=lambda item: -item[1][0])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    loader = sub.add_parser("loader", help="episodes/s of one loader process",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    loader.add_argument("--data-dir", help="a rendered dataset with 640x640 scenes; default: synthetic")
    loader.add_argument("--episodes", type=int, default=2000, help="episodes timed per row")
    parser.add_argument("--out", default="runs/bench", help="dir for BENCHMARK.json")
    train = sub.add_parser("train", help="seconds/step and GFLOP/s of the jitted train step",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--model-config", choices=("cpu", "seed"), default="cpu", help="of --workload yolz")
    train.add_argument("--workload", choices=tuple(WORKLOADS), default="yolz",
                       help="yolz: its own defaults at --model-config; original: the original's step exactly")
    train.add_argument("--steps", type=int, default=50, help="steps timed, after one warm-up step")
    train.add_argument("--scenes-per-step", type=int, default=1, help="B, sharded over all devices")
    train.add_argument("--profile", action="store_true", help="also profile 3 steps: the top XLA ops")
    train.add_argument("--flops-per-cycle", type=float, default=32,
                       help="FP32 FLOP per cycle per core for the CPU peak; 32 = 2 FMA pipes x 8 lanes x 2 "
                            "(AMD Zen 2-4; 64 for Intel cores with two 512-bit FMA units)")
    inference = sub.add_parser("inference", help="queries/s: scene backbone shared by C objects vs one pass each",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    inference.add_argument("--run-dir", default="pretrained", help="a trained run (its config and weights)")
    inference.add_argument("--num-objects", type=int, default=16, help="C objects queried in the scene")
    inference.add_argument("--repeats", type=int, default=10, help="timed calls, after one that compiles")
    latency = sub.add_parser("latency", help="per-frame latency, start-up and memory of the JAX and ONNX backends",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    latency.add_argument("--run-dir", default="pretrained", help="a trained run with a box head")
    latency.add_argument("--export-dir", help="export.py's export of --run-dir; default: export it to a temp dir")
    latency.add_argument("--repeats", type=int, default=100, help="frames timed per row, after one warm-up")
    latency.add_argument("--startups", type=int, default=3, help="detect.py runs per backend (the median reported)")
    latency.add_argument("--flops-per-cycle", type=float, default=32, help="as train's")
    latency.add_argument("--profile", action="store_true", help="also onnxruntime's time per op type, C=16")
    latency.add_argument("--worker", choices=("jax", "onnx"), help=argparse.SUPPRESS)  # one backend's process
    generate = sub.add_parser("generate", help="scenes/s and reference views/s of data generation, 1 worker and all",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    generate.add_argument("--profile", choices=("small", "full"), default="small", help="scene and view sizes")
    generate.add_argument("--scenes", type=int, default=16, help="scenes rendered per row, 4 per chunk")
    args = parser.parse_args(argv)
    if getattr(args, "worker", None):
        return latency_worker(args)
    result = {"loader": bench_loader, "train": bench_train, "inference": bench_inference, "latency": bench_latency,
              "generate": bench_generate}[args.benchmark](args)
    os.makedirs(args.out, exist_ok=True)
    name = args.benchmark
    if args.benchmark == "train":
        name += f"_{args.workload}_{result['model_config']}_b{result['B']}_d{result['devices']}"
    path = os.path.join(args.out, f"{name}.json")
    write_json_atomic(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    env = huge_pages_env(os.environ)
    if env != dict(os.environ):  # time the step as v3_train.sh runs it
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    main()
