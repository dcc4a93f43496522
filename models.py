"""The embedding CNN and the scene U-Net, layer for layer as the original's summaries.

    python models.py            # prints both summaries at the seed config (a few seconds)
    python models.py --cpu      # the smaller config the CPU demo trains

The scene model takes ONE scene and C object embeddings: the scene's features (batch 1)
broadcast against the C embeddings at the add after `broadcast_e` and at every skip add, so the
backbone runs once per scene whatever C is (as the original does).
"""

import argparse
import dataclasses
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    view_size: int = 64
    obj_filters: tuple = (16, 32, 64, 256)  # embedding CNN, each a stride-2 3x3 conv
    embedding_dim: int = 512  # E
    scene_size: int = 640
    scene_filters: tuple = (16, 32, 64, 128, 256, 256)  # scene backbone, stride-2 3x3 convs
    classifier_filters: tuple = (256, 128)  # 1x1 convs before the per-cell logit
    classifier_bias: float = -5.0  # starts P(object) at ~0.007: most cells are background
    # box head (issue 5; the original has none): A prior (width, height) in scene pixels, from
    # k-means on the training boxes (train.py --num-priors); empty: no box head
    priors: tuple = ()

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
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(config.to_json(), f, indent=1)
    os.replace(tmp, path)


def load_config(path):
    with open(path) as f:
        return ModelConfig.from_json(json.load(f))


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


@keras.saving.register_keras_serializable("yolz")
class PointwiseConv2D(layers.Conv2D):
    """A 1x1, stride-1 Conv2D computed as a matmul over the channels: the same weights (kernel
    (1, 1, in, out)) and results to float rounding, but XLA:CPU makes its weight gradient a plain
    dot instead of a slow convolution over the whole image (the seed config's train step: 4.11 ->
    2.24 s/step, README, Benchmarks)."""

    def call(self, inputs):
        x = ops.einsum("...c,co->...o", inputs, self.kernel[0, 0])
        return self.activation(x + self.bias if self.use_bias else x)


def conv_bn_relu(x, filters, kernel_size, strides, name):
    conv = PointwiseConv2D if kernel_size == 1 and strides == 1 else layers.Conv2D
    x = conv(filters, kernel_size, strides=strides, padding="same", name=f"{name}_conv_m")(x)
    x = layers.BatchNormalization(name=f"{name}_bn_m")(x)
    return layers.Activation("relu", name=f"{name}_relu_m")(x)


def embedding_model(config=SEED_CONFIG):
    """(V, h, w, 3) float views in [0, 1] -> (V, E) L2-normalised embeddings."""
    inputs = keras.Input((config.view_size, config.view_size, 3), name="input_layer")
    x = inputs
    for i, filters in enumerate(config.obj_filters):
        x = conv_bn_relu(x, filters, 3, 2, f"obj_e_{i}")
    x = layers.GlobalMaxPooling2D(name="obj_e_gp")(x)
    x = layers.Dense(config.embedding_dim, use_bias=False, name="obj_embeddings")(x)
    return keras.Model(inputs, L2Normalisation(name="obj_e_l2")(x), name="embedding")


def scene_model(config=SEED_CONFIG):
    """[(1, H, W, 3) float scene in [0, 1], (C, E) embeddings] -> (C, G, G, 1) logits of P(object);
    with priors, also (C, G, G, A, 5) box outputs (t_o, t_x, t_y, t_w, t_h per prior, see boxes.py)."""
    scene = keras.Input((config.scene_size, config.scene_size, 3), name="scene_input")
    x, skips = scene, []
    for i, filters in enumerate(config.scene_filters):
        x = conv_bn_relu(x, filters, 3, 2, f"scene_down_{i}")
        skips.append(x)
    embedding = keras.Input((config.embedding_dim,), name="obj_embedding_inp")
    x = layers.Dense(config.embedding_dim, use_bias=False, name="scene_features")(x)
    e = Broadcast(config.scene_size // 2 ** len(config.scene_filters), name="broadcast_e")(embedding)
    x = layers.Add(name="add")([x, e])
    # three upsamplings back to 1/8 scale, each added to the backbone's output there
    for i, skip in enumerate(reversed(skips[2:-1])):
        x = layers.UpSampling2D(name="up_sampling2d" + (f"_{i}" if i else ""))(x)
        x = conv_bn_relu(x, skip.shape[-1], 1, 1, f"scene_up_{i}")
        x = layers.Add(name=f"add_{i + 1}")([x, skip])
    for i, filters in enumerate(config.classifier_filters):
        x = conv_bn_relu(x, filters, 1, 1, f"classifier_{i}")
    logits = layers.Dense(1, bias_initializer=keras.initializers.Constant(config.classifier_bias),
                          name="classifier")(x)
    if not config.priors:
        return keras.Model([scene, embedding], logits, name="scene")
    a, g = len(config.priors), config.grid_size
    # objectness starts low as the classifier's does; box terms at 0 (the prior itself, centred)
    bias = keras.initializers.Constant([config.classifier_bias, 0.0, 0.0, 0.0, 0.0] * a)
    boxes = layers.Dense(5 * a, bias_initializer=bias, name="boxes")(x)
    boxes = layers.Reshape((g, g, a, 5), name="boxes_per_prior")(boxes)
    return keras.Model([scene, embedding], [logits, boxes], name="scene")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the CPU demo config instead of the seed config")
    args = parser.parse_args()
    config = CPU_CONFIG if args.cpu else SEED_CONFIG
    embedding_model(config).summary(line_length=90)
    scene_model(config).summary(line_length=120)


if __name__ == "__main__":
    main()
