"""The embedding CNN and the scene U-Net, layer for layer as the original's summaries (the up
path's order aside: the same function, cheaper), and how they are called: functionally
(stateless_call) inside jitted steps, on explicit state.

    python models.py            # prints both summaries at the seed config (a few seconds)
    python models.py --cpu      # the smaller config the CPU demo trains

The scene model takes ONE scene and C object embeddings: the scene's features (batch 1)
broadcast against the C embeddings at the add after `broadcast_e` and at every skip add, so the
backbone runs once per scene whatever C is (as the original does).

Reading order: ModelConfig, the two Keras graphs, then the functional passes (`embed_views`,
`cell_outputs`), the jitted inference steps (`embed_objects`, `find_in_scenes`), state <-> arrays
and `load_run`'s `Run`, the JAX backend inference.Inference calls.
"""

import argparse
import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")
# XLA:CPU hands each convolution to YNNPACK by default; its own convolution emitter runs these
# small-channel convs faster (the cpu config's train step 1.23x, the original's workload within
# the noise, same losses; docs/benchmarks.md). Read when the backend starts, so it must be set
# before the first computation; a user's own choice of this flag wins, and a jaxlib older than
# the one measured may not know the flag (an unknown flag aborts the process).
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
if ("xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", "")
        and tuple(int(v) for v in importlib.metadata.version("jaxlib").split(".")[:2]) >= (0, 10)):
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), YNN_FLAG]).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from util import DataError, atomic_write, composite, one_line, read_json  # noqa: E402


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    view_size: int = 64
    obj_filters: tuple = (16, 32, 64, 256)  # embedding CNN, each a stride-2 3x3 conv
    embedding_dim: int = 512  # E
    scene_size: int = 640
    scene_filters: tuple = (16, 32, 64, 128, 256, 256)  # scene backbone, stride-2 3x3 convs
    classifier_filters: tuple = (256, 128)  # 1x1 convs before the per-cell logit
    classifier_bias: float = -5.0  # starts P(object) at ~0.007: most cells are background
    # box head (the original has none): A prior (width, height) in scene pixels, from
    # k-means on the training boxes (train.py --num-priors); empty: no box head
    priors: tuple = ()
    # cells responsible for each instance: 1, the one holding its centre (YOLOv2), or 3, also the
    # nearer horizontal and vertical neighbour, whose boxes reach half a cell farther (YOLOv5;
    # boxes.py): it sets how t_x, t_y decode, so it belongs to the model
    box_cells: int = 1
    # 3x3 conv layers (the classifier's first width) the box outputs read through, as YOLOv3's
    # heads convolve 3x3 before their 1x1 outputs: a cell then sees its neighbours' features when
    # it places a box. 0: each cell's box from its own features alone, as its P(object) is
    box_head_convs: int = 0
    # of obj_embeddings and scene_features, the two dense layers the embedding passes through;
    # the original's: truncated_normal (Keras' TruncatedNormal, stddev 0.05)
    dense_initializer: str = "glorot_uniform"
    # how the object embedding meets the scene: "add" (the original's: once, at the bottleneck)
    # or "film": also a per-channel scale and shift from the embedding after every decoder add
    # and classifier layer, so that every scale the head reads is conditioned on the object
    matching: str = "add"

    @property
    def grid_size(self):  # the classifier's output is at 1/8 of the scene
        return self.scene_size // 8

    @property
    def stride(self):  # scene pixels per grid cell
        return self.scene_size / self.grid_size

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj):
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()}
        fields["priors"] = tuple(tuple(p) for p in fields.get("priors", ()))
        return cls(**fields)


SEED_CONFIG = ModelConfig()
# ~1/30 of the seed config's FLOPs at 320x320: trains to a useful point in minutes on 2 cores.
CPU_CONFIG = ModelConfig(obj_filters=(16, 32, 64, 128), embedding_dim=128, scene_size=320,
                         scene_filters=(16, 32, 32, 64, 128, 128), classifier_filters=(64, 32))


def save_config(path, config):
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(config.to_json(), f, indent=1)


CONFIG_CHOICES = {"box_cells": (1, 3), "dense_initializer": ("glorot_uniform", "truncated_normal"),
                  "matching": ("add", "film")}
# how boxes were scored, which model_config.json held before inference.json did: read by inference.py
INFERENCE_KEYS_OF_OLD_RUNS = ("box_score", "presence_power")


def config_value_fits(name, value):
    """Whether a model_config.json value is of its field's kind: a positive int (box_head_convs: 0 or
    more), a finite number, a list of positive ints, priors as a list of positive (width, height)
    pairs, or one of CONFIG_CHOICES."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def count(v, least=1):
        return isinstance(v, int) and not isinstance(v, bool) and v >= least

    if name in CONFIG_CHOICES:
        return type(value) is type(CONFIG_CHOICES[name][0]) and value in CONFIG_CHOICES[name]
    if name == "priors":
        return isinstance(value, list) and all(
            isinstance(p, list) and len(p) == 2 and all(number(v) and v > 0 for v in p) for p in value)
    default = getattr(ModelConfig, name)
    if isinstance(default, tuple):
        return isinstance(value, list) and len(value) > 0 and all(count(v) for v in value)
    if isinstance(default, float):
        return number(value)
    return count(value, 0 if name == "box_head_convs" else 1)


def load_config(path):
    """A ModelConfig from a model_config.json; a DataError naming the file if it does not describe one."""
    obj = read_json(path)
    if isinstance(obj, dict):  # inference.py reads these of older runs
        obj = {k: v for k, v in obj.items() if k not in INFERENCE_KEYS_OF_OLD_RUNS}
    unknown = set(obj) - {f.name for f in dataclasses.fields(ModelConfig)} if isinstance(obj, dict) else ()
    if not isinstance(obj, dict) or unknown:
        raise DataError(f"{path} is not a model config (unknown keys: {', '.join(sorted(unknown)) or 'not an object'}):"
                        " give one written by train.py, or cpu / seed")
    bad = [name for name, value in obj.items() if not config_value_fits(name, value)]
    if bad:
        raise DataError(f"{path}: {bad[0]} {json.dumps(obj[bad[0]])} is not a value the model takes: restore the "
                        "file train.py wrote, or give cpu / seed")
    return ModelConfig.from_json(obj)


def build_from_file(config, path, seed=None):
    """build_models of a config read from `path`, a DataError naming it where the sizes do not build."""
    try:
        return build_models(config, seed)
    except (ValueError, TypeError) as error:
        raise DataError(f"{path}: these sizes do not build a model ({one_line(error)}): restore the file train.py "
                        "wrote, or give cpu / seed") from None


@keras.saving.register_keras_serializable("yolz")
class L2Normalisation(layers.Layer):
    def call(self, x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable("yolz")
class Broadcast(layers.Layer):
    """(B, E) -> (B, h, w, E): the embedding repeated over the scene's bottleneck grid."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, e):
        return ops.broadcast_to(e[:, None, None, :], (ops.shape(e)[0], self.size, self.size, ops.shape(e)[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def leading_sum(x):
    """(a, ...) -> (...): the sum over the leading axis, as a dot with ones (XLA:CPU's reduction
    over a leading axis is ~10x slower: 33.8 against 3.7 ms on (16, 80, 80, 64))."""
    return jnp.einsum("a,a...->...", jnp.ones(x.shape[0], x.dtype), x)


def summed_dots(x, g):
    """(a, n, c), (a, n, o) -> (c, o): x^T g summed over a and n, a weight gradient. As one dot over
    the a x n rows XLA:CPU first writes x transposed, a loop that gathers with a stride of one row;
    as a dot per leading index, summed, it reads x as it lies."""
    return leading_sum(jnp.einsum("anc,ano->aco", x, g))


@jax.custom_vjp
def pointwise_matmul(x, w):
    """(a, ..., c) @ (c, o) -> (a, ..., o), the usual gradients. The weight gradient sums over every
    cell; as one dot XLA:CPU first writes x transposed (cells minor) for it, a loop that gathers
    with a stride of one row (at the original's workload 160-420 ms, up to a fifth of the step).
    As a dot per leading index a (an object), summed, the dot reads x as it lies and no transposed
    copy is written (the same losses; docs/benchmarks.md)."""
    return jnp.einsum("...c,co->...o", x, w)


def _pointwise_forward(x, w):
    return pointwise_matmul(x, w), (x, w)


def _pointwise_backward(residuals, g):
    x, w = residuals
    (c, o), a = w.shape, x.shape[0] if x.ndim > 2 else 1
    return jnp.einsum("...o,co->...c", g, w), summed_dots(x.reshape(a, -1, c), g.reshape(a, -1, o))


pointwise_matmul.defvjp(_pointwise_forward, _pointwise_backward)


@keras.saving.register_keras_serializable("yolz")
class PointwiseConv2D(layers.Conv2D):
    """A 1x1, stride-1 Conv2D computed as a matmul over the channels: the same weights (kernel
    (1, 1, in, out)) and results to float rounding, but XLA:CPU makes its weight gradient a plain
    dot instead of a slow convolution over the whole image (the seed config's train step about
    2.0x faster, docs/benchmarks.md)."""

    def call(self, inputs):
        x = pointwise_matmul(inputs, self.kernel[0, 0])
        return self.activation(x + self.bias if self.use_bias else x)


@jax.custom_vjp
def add_to_each(x, skip):
    """(C, ...) per-object features + (1, ...) the scene's -> (C, ...), the usual gradients; the
    scene's summed over the C objects by leading_sum."""
    return x + skip


def _add_to_each_forward(x, skip):
    return x + skip, None


def _add_to_each_backward(_, g):
    return g, leading_sum(g)[None]


add_to_each.defvjp(_add_to_each_forward, _add_to_each_backward)


@keras.saving.register_keras_serializable("yolz")
class SkipAdd(layers.Layer):
    """[(C, h, w, ch) features, (1, h, w, ch) the backbone's at that scale] -> their sum (C, h, w, ch)."""

    def call(self, inputs):
        return add_to_each(*inputs)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@jax.custom_vjp
def strided_conv(x, w):
    """(b, H, W, c) images, (3, 3, c, o) kernel -> (b, ceil(H / 2), ceil(W / 2), o): the 3x3,
    stride-2, "same" convolution keras' Conv2D computes, with the usual gradients. XLA:CPU makes
    the weight gradient a convolution over the batch on channel-major copies of the image and of
    the output's gradient, slow for a batch of one large image (the scene: 3-5x slower than
    this); here it is nine dots, one per kernel tap, each over a strided slice of the image. For
    the views (80-160 small images a step) XLA's own is faster, so only the scene backbone uses it."""
    return _conv_stride_2(x, w)


def _conv_stride_2(x, w):
    return jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _strided_forward(x, w):
    return _conv_stride_2(x, w), (x, w)


def _strided_backward(residuals, g):
    x, w = residuals
    (b, oh, ow, o), c = g.shape, x.shape[-1]
    dx = jax.vjp(lambda x: _conv_stride_2(x, w), x)[1](g)[0]
    pad_h, pad_w = max(2 * oh + 1 - x.shape[1], 0), max(2 * ow + 1 - x.shape[2], 0)  # as "same" pads
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    g = g.reshape(b, oh * ow, o)
    # tap (i, j) meets output cell (r, s) at image pixel (2r + i, 2s + j)
    taps = [x[:, i:i + 2 * oh - 1:2, j:j + 2 * ow - 1:2].reshape(b, oh * ow, c) for i in range(3) for j in range(3)]
    return dx, jnp.stack([summed_dots(tap, g) for tap in taps]).reshape(w.shape)


strided_conv.defvjp(_strided_forward, _strided_backward)


@keras.saving.register_keras_serializable("yolz")
class Conv2D(layers.Conv2D):
    """keras' 3x3 stride-2 Conv2D for the scene backbone, its weight gradient by `strided_conv`:
    the same weights and results to float rounding. Named as keras' own because Keras keys a
    weights file's layers by class name: runs saved with keras' Conv2D load unchanged."""

    def __init__(self, filters, kernel_size, strides, **kwargs):
        if (kernel_size, strides) not in ((3, 2), ((3, 3), (2, 2))) or kwargs.get("padding") != "same":
            raise ValueError(f"models.Conv2D is a 3x3, stride-2, same-padded convolution, not {kernel_size}, "
                             f"stride {strides}: use keras.layers.Conv2D")
        super().__init__(filters, kernel_size, strides=strides, **kwargs)

    def call(self, inputs):
        x = strided_conv(inputs, self.kernel.value)
        return self.activation(x + self.bias if self.use_bias else x)


def conv_bn_relu(x, filters, kernel_size, strides, name, conv=layers.Conv2D):
    conv = PointwiseConv2D if kernel_size == 1 and strides == 1 else conv
    x = conv(filters, kernel_size, strides=strides, padding="same", name=f"{name}_conv_m")(x)
    x = layers.BatchNormalization(name=f"{name}_bn_m")(x)
    return layers.Activation("relu", name=f"{name}_relu_m")(x)


@keras.saving.register_keras_serializable("yolz")
class FiLM(layers.Layer):
    """[(C or 1, g, g, ch) features, (C, E) embeddings] -> (C, g, g, ch) features * (1 + gamma) + beta,
    gamma and beta per object and channel, linear in its embedding and zero at the start (so
    that the layer starts as the identity)."""

    def build(self, input_shapes):
        (*_, channels), (_, dim) = input_shapes
        self.kernel = self.add_weight((dim, 2 * channels), initializer="zeros", name="kernel")
        self.bias = self.add_weight((2 * channels,), initializer="zeros", name="bias")

    def call(self, inputs):
        x, e = inputs
        gamma, beta = ops.split(ops.matmul(e, self.kernel) + self.bias, 2, axis=-1)
        return x * (1 + gamma[:, None, None, :]) + beta[:, None, None, :]

    def compute_output_shape(self, input_shapes):
        (_, *cell, channels), (c, _) = input_shapes
        return (c, *cell, channels)


def embedding_model(config=SEED_CONFIG):
    """(V, h, w, 3) float views in [0, 1] -> (V, E) L2-normalised embeddings."""
    inputs = keras.Input((config.view_size, config.view_size, 3), name="input_layer")
    x = inputs
    for i, filters in enumerate(config.obj_filters):
        x = conv_bn_relu(x, filters, 3, 2, f"obj_e_{i}")
    x = layers.GlobalMaxPooling2D(name="obj_e_gp")(x)
    x = layers.Dense(config.embedding_dim, use_bias=False, kernel_initializer=config.dense_initializer,
                     name="obj_embeddings")(x)
    return keras.Model(inputs, L2Normalisation(name="obj_e_l2")(x), name="embedding")


def scene_model(config=SEED_CONFIG):
    """[(1, H, W, 3) float scene in [0, 1], (C, E) embeddings] -> (C, G, G, 1) logits of P(object);
    with priors, also (C, G, G, A, 5) box outputs (t_o, t_x, t_y, t_w, t_h per prior, see boxes.py)."""
    scene = keras.Input((config.scene_size, config.scene_size, 3), name="scene_input")
    x, skips = scene, []
    for i, filters in enumerate(config.scene_filters):
        x = conv_bn_relu(x, filters, 3, 2, f"scene_down_{i}", conv=Conv2D)
        skips.append(x)
    embedding = keras.Input((config.embedding_dim,), name="obj_embedding_inp")
    x = layers.Dense(config.embedding_dim, use_bias=False, kernel_initializer=config.dense_initializer,
                     name="scene_features")(x)
    e = Broadcast(config.scene_size // 2 ** len(config.scene_filters), name="broadcast_e")(embedding)
    x = layers.Add(name="add")([x, e])
    film = config.matching == "film"
    # three upsamplings back to 1/8 scale, each added to the backbone's output there. The
    # original upsamples, then convolves; a 1x1 conv, its batch norm (each cell counted 4 times
    # either way) and relu commute with nearest upsampling, so here they run on a quarter of the
    # cells first: the same function, a fifth of the seed config's FLOPs saved
    for i, skip in enumerate(reversed(skips[2:-1])):
        x = conv_bn_relu(x, skip.shape[-1], 1, 1, f"scene_up_{i}")
        x = layers.UpSampling2D(name="up_sampling2d" + (f"_{i}" if i else ""))(x)
        x = SkipAdd(name=f"add_{i + 1}")([x, skip])
        x = FiLM(name=f"film_up_{i}")([x, embedding]) if film else x
    for i, filters in enumerate(config.classifier_filters):
        x = conv_bn_relu(x, filters, 1, 1, f"classifier_{i}")
        x = FiLM(name=f"film_classifier_{i}")([x, embedding]) if film else x
    logits = layers.Dense(1, bias_initializer=keras.initializers.Constant(config.classifier_bias),
                          name="classifier")(x)
    if not config.priors:
        return keras.Model([scene, embedding], logits, name="scene")
    return keras.Model([scene, embedding], [logits, box_head(x, embedding, config)], name="scene")


def box_head(x, embedding, config):
    """(C, G, G, ch) the classifier's features, (C, E) embeddings -> (C, G, G, A, 5) box outputs."""
    for i in range(config.box_head_convs):
        x = conv_bn_relu(x, config.classifier_filters[0], 3, 1, f"box_head_{i}")
        x = FiLM(name=f"film_box_head_{i}")([x, embedding]) if config.matching == "film" else x
    a, g = len(config.priors), config.grid_size
    # objectness starts low as the classifier's does; box terms at 0 (the prior itself, centred)
    bias = keras.initializers.Constant([config.classifier_bias, 0.0, 0.0, 0.0, 0.0] * a)
    boxes = layers.Dense(5 * a, bias_initializer=bias, name="boxes")(x)
    return layers.Reshape((g, g, a, 5), name="boxes_per_prior")(boxes)


def enable_compilation_cache():
    """Compiled steps persist across processes (YOLZ_JAX_CACHE, default ~/.cache/yolz/jax): each
    entry point's main calls this; importing a module never does."""
    jax.config.update("jax_compilation_cache_dir",
                      os.environ.get("YOLZ_JAX_CACHE", os.path.expanduser("~/.cache/yolz/jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# ---------------------------------------------------------------------------------------------
# the models called functionally: params in, outputs and new non-trainable state out


@dataclasses.dataclass(frozen=True, eq=False)
class Models:
    """The two Keras graphs and their config. Hashed by identity, so a jitted step takes it as a
    static argument and traces each graph once."""

    embedding: keras.Model
    scene: keras.Model
    config: ModelConfig


def build_models(config, seed=None):
    """Fresh models of a config; with a seed, their initial weights are a function of it."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return Models(embedding_model(config), scene_model(config), config)


def l2_normalise(x, axis=-1):
    return x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), 1e-12))


def mean_embedding(embeddings):
    """(..., N, E) per-view embeddings -> (..., E): their mean, re-L2-normalised: the object's embedding."""
    return l2_normalise(jnp.mean(embeddings, axis=-2))


def embed_views(models, params, nt_params, views, backgrounds, training, per_object=False):
    """The embedding model's params and state, (B, Q, N, h, w, 4) uint8 views on (B, Q, N, 3)
    backgrounds -> ((B, Q, N, E) per-view embeddings, new state).

    Batch norm in training normalises over every view of the batch at once, or, per_object (the
    original's way: it maps the model over objects), over each object's N views on their own,
    the B x Q objects' moving statistics averaged. In inference mode both are the same.
    """
    shape = views.shape[:3]
    images = composite(views, backgrounds)  # (B, Q, N, h, w, 3)
    if not per_object:
        e, nt_params = models.embedding.stateless_call(params, nt_params, images.reshape((-1, *images.shape[3:])),
                                                       training=training)
        return e.reshape((*shape, -1)), nt_params

    def one(object_views):  # (N, h, w, 3)
        return models.embedding.stateless_call(params, nt_params, object_views, training=training)

    e, nt = jax.vmap(one)(images.reshape((-1, *images.shape[2:])))  # (B*Q, N, E)
    return e.reshape((*shape, -1)), [jnp.mean(v, axis=0) for v in nt]


def cell_outputs(models, params, nt_params, scenes, embeddings, training):
    """The scene model's params and state, (B, H, W, 3) uint8 scenes, (B, Q, E) object embeddings ->
    ((B, Q, G, G) logits of P(object), (B, Q, G, G, A, 5) raw box outputs or None without a box
    head, new state).

    One scene per call of the scene model, its backbone once for all Q objects; scenes are
    vmapped, and the batch-norm moving statistics of the B calls averaged (the same as
    averaging the B scenes' batch statistics into the moving average).
    """
    def one(scene, e):
        outputs, nt = models.scene.stateless_call(params, nt_params, [scene[None].astype("float32") / 255, e],
                                                  training=training)
        logits, boxes = outputs if isinstance(outputs, (list, tuple)) else (outputs, None)
        return logits[..., 0], boxes, nt

    logits, boxes, nt = jax.vmap(one)(scenes, embeddings)
    return logits, boxes, [jnp.mean(v, axis=0) for v in nt]


# ---------------------------------------------------------------------------------------------
# inference steps (jitted, inference mode); params and nt_params are (embedding's, scene's) pairs

@functools.partial(jax.jit, static_argnames="models")
def embed_objects(params, nt_params, views, backgrounds, models):
    """(K, N, h, w, 4) uint8 views on (K, N, 3) backgrounds -> (K, E) object embeddings."""
    e, _ = embed_views(models, params[0], nt_params[0], views[None], backgrounds[None], False)
    return mean_embedding(e)[0]


@functools.partial(jax.jit, static_argnames="models")
def find_in_scenes(params, nt_params, scenes, embeddings, models):
    """(B, H, W, 3) uint8 scenes, (B, C, E) object embeddings -> (B, C, G, G) P(object) and (B, C, G,
    G, A, 5) raw box outputs (None without a box head): each backbone runs once for its C objects."""
    logits, boxes, _ = cell_outputs(models, params[1], nt_params[1], scenes, embeddings, False)
    return jax.nn.sigmoid(logits), boxes


def find_in_scene(params, nt_params, scene, embeddings, models):
    """(H, W, 3) uint8 scene, (C, E) object embeddings -> (C, G, G) P(object) and (C, G, G, A, 5)
    raw box outputs (None without a box head): find_in_scenes of one scene."""
    probs, boxes = find_in_scenes(params, nt_params, scene[None], embeddings[None], models)
    return probs[0], None if boxes is None else boxes[0]


# ---------------------------------------------------------------------------------------------
# state: models <-> arrays, weights on disk, a finished run


def model_state(models):
    """-> (params, nt_params), each an (embedding's, scene's) pair of lists of arrays."""
    params = ([v.value for v in models.embedding.trainable_variables],
              [v.value for v in models.scene.trainable_variables])
    nt_params = ([v.value for v in models.embedding.non_trainable_variables],
                 [v.value for v in models.scene.non_trainable_variables])
    return params, nt_params


def assign_state(models, params, nt_params):
    for model, tv, ntv in ((models.embedding, params[0], nt_params[0]), (models.scene, params[1], nt_params[1])):
        for variable, value in zip(model.trainable_variables, tv):
            variable.assign(value)
        for variable, value in zip(model.non_trainable_variables, ntv):
            variable.assign(value)


def save_weights(directory, models, params, nt_params):
    """embedding.weights.h5 and scene.weights.h5 in directory, each written atomically."""
    assign_state(models, params, nt_params)
    for name, model in (("embedding", models.embedding), ("scene", models.scene)):
        with atomic_write(os.path.join(directory, f"{name}.weights.h5"), suffix=".weights.h5") as tmp:
            model.save_weights(tmp)


def load_weights(directory, models, fix):
    """save_weights' files in directory loaded into models; a DataError naming the file, then `fix`
    (what to do), where they do not fit the models' config."""
    for name, model in (("embedding", models.embedding), ("scene", models.scene)):
        with warnings.catch_warnings(record=True) as said:  # Keras' warnings before the error it raises
            warnings.simplefilter("always")
            try:
                model.load_weights(os.path.join(directory, f"{name}.weights.h5"))
            except (ValueError, KeyError, OSError) as error:
                raise DataError(f"{directory}/{name}.weights.h5 does not fit the run's model_config.json "
                                f"({one_line(error)}): {fix}") from None
        for warning in said:  # loaded after all: what Keras had to say still goes out
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


@dataclasses.dataclass(frozen=True)
class Run:
    """Models and their state as inference.Inference calls them (the JAX backend; runtime.Exported
    is the ONNX one); load_run's also hold the run's options.json as a dict."""

    models: Models
    params: tuple
    nt_params: tuple
    options: dict = dataclasses.field(default_factory=dict)

    @property
    def config(self):
        return self.models.config

    def embed(self, views, backgrounds):
        """(K, N, h, w, 4) uint8 views on (K, N, 3) uint8 backgrounds -> (K, E) float32 object embeddings."""
        return np.asarray(embed_objects(self.params, self.nt_params, views, backgrounds, self.models))

    def find(self, scenes, embeddings):
        """(B, H, W, 3) uint8 scenes, (B, C, E) object embeddings -> (B, C, G, G) float32 P(object) and
        (B, C, G, G, A, 5) raw box outputs (None without a box head)."""
        probs, boxes = find_in_scenes(self.params, self.nt_params, scenes, embeddings, self.models)
        return np.asarray(probs), None if boxes is None else np.asarray(boxes)


def load_run(run_dir):
    """A finished run rebuilt from its own files (options.json, model_config.json, the weights)."""
    if not os.path.isdir(run_dir):
        raise DataError(f"run dir {run_dir} does not exist: give one made by v3_train.sh, or pretrained")
    needed = ("options.json", "model_config.json", "embedding.weights.h5", "scene.weights.h5")
    missing = [name for name in needed if not os.path.exists(os.path.join(run_dir, name))]
    if missing and os.path.exists(os.path.join(run_dir, "export.json")):
        raise DataError(f"{run_dir} holds an ONNX export (export.py's), not a run: give --backend onnx")
    if missing:
        raise DataError(f"{run_dir} has no {', '.join(missing)}: is it a finished training run? (finish an "
                        f"interrupted one with: python train.py --resume {run_dir})")
    path = os.path.join(run_dir, "model_config.json")
    models = build_from_file(load_config(path), path)
    load_weights(run_dir, models, "the run dir is inconsistent, retrain or restore it")
    return Run(models, *model_state(models), options=read_json(os.path.join(run_dir, "options.json")))


def check_scene_size(split, config):
    """A DataError unless the split's scenes are the size the model config takes."""
    scene_size = split.manifest["arrays"]["rgb"]["shape"][0]
    if scene_size != config.scene_size:
        raise DataError(f"{split.data_dir} has {scene_size}x{scene_size} scenes but the model config expects "
                        f"{config.scene_size}: use a --model-config made for {scene_size}x{scene_size} scenes (cpu: "
                        "320, seed: 640), or data rendered at the model's size")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the CPU demo config instead of the seed config")
    args = parser.parse_args()
    config = CPU_CONFIG if args.cpu else SEED_CONFIG
    embedding_model(config).summary(line_length=90)
    scene_model(config).summary(line_length=120)


if __name__ == "__main__":
    main()
