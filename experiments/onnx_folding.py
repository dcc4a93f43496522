"""Does onnxruntime's scene pass get faster with batch norm folded into the convolutions before
export? Each `NAME_bn_m` layer's scale and shift go into the weights and bias of `NAME_conv_m`
before it, and the layer is taken out of the traced graph; both scene graphs are converted as
export.py converts them and timed side by side, in alternating blocks, on one scene and C
objects.

    python -m experiments.onnx_folding --objects 16     # ~1 min on 2 cores
"""

import argparse
import time

import jax
import numpy as np
from jax2onnx import to_onnx

import export
from models import Run, load_run, model_state
from runtime import session
from util import exits_in_one_line, positive_int


def folded(run):
    """The run with every batch norm after a biased convolution folded into that convolution and
    taken out of the graph (its weights made the identity too, should a trace cached before be
    reused) -> (Run, the number folded)."""
    count = 0
    for model in (run.models.embedding, run.models.scene):
        for bn in [layer for layer in model.layers if layer.name.endswith("_bn_m")]:
            conv = model.get_layer(bn.name.replace("_bn_m", "_conv_m"))
            if not conv.use_bias:
                continue
            gamma, beta, mean, var = (np.asarray(w) for w in bn.get_weights())
            scale = gamma / np.sqrt(var + bn.epsilon)
            conv.set_weights([np.asarray(conv.kernel) * scale, np.asarray(conv.bias) * scale + beta - mean * scale])
            ones, zeros = np.ones_like(scale), np.zeros_like(scale)
            bn.set_weights([ones, zeros, zeros, ones - bn.epsilon])
            bn.call = lambda inputs, training=None, mask=None: inputs
            count += 1
    jax.clear_caches()  # so that the next trace sees the layers gone
    return Run(run.models, *model_state(run.models), run.options), count


def converted(run):
    """The run's scene graph as export.py converts it, in an onnxruntime session."""
    function, specs, ins, outs = export.graphs(run)["scene"]
    proto = to_onnx(function, specs, opset=export.OPSET, input_names=ins, output_names=outs)
    return session(proto.SerializeToString())


def median_ms(sessions, scene, embeddings, rounds, block=10):
    """Each session's median time of the scene pass over `rounds` passes, in alternating blocks of
    `block`: a session's threads spin a while after each run, and would slow one run just after
    (2 sessions alternating pass by pass: 1.7x slower each on 2 cores)."""
    times = [[] for _ in sessions]
    for _ in range(max(1, rounds // block)):
        for s, t in zip(sessions, times):
            s.run(None, {"scene": scene, "embeddings": embeddings})  # the other's threads settle
            for _ in range(block):
                start = time.perf_counter()
                s.run(None, {"scene": scene, "embeddings": embeddings})
                t.append(time.perf_counter() - start)
    return [1e3 * float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained")
    parser.add_argument("--objects", type=positive_int, default=16, help="C objects in the scene pass")
    parser.add_argument("--rounds", type=positive_int, default=60, help="timed passes of each graph")
    args = parser.parse_args(argv)
    with exits_in_one_line():
        run = load_run(args.run_dir)
        c = run.config
        rng = np.random.default_rng(0)
        scene = rng.integers(0, 256, (c.scene_size, c.scene_size, 3), dtype=np.uint8)
        embeddings = rng.standard_normal((args.objects, c.embedding_dim)).astype(np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        plain_probs = run.find(scene[None], embeddings[None])[0][0]
        plain = converted(run)  # before folding: it changes the models' layers
        run, count = folded(run)
        sessions = [plain, converted(run)]
        differences = [float(np.max(np.abs(s.run(None, {"scene": scene, "embeddings": embeddings})[0] - plain_probs)))
                       for s in sessions]
        ms = median_ms(sessions, scene, embeddings, args.rounds)
        print(f"{count} batch norms folded; C={args.objects}, median of {args.rounds} passes each:")
        for name, t, d in zip(("as exported", "folded"), ms, differences):
            print(f"  {name:<12} {t:6.2f} ms   largest |P(object) - JAX's| {d:.1e}")
    return {"folded": count, "ms": ms, "differences": differences}


if __name__ == "__main__":
    main()
