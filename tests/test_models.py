import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from conftest import REPO, TINY_MODEL
from models import (SEED_CONFIG, Conv2D, add_to_each, box_head, conv_bn_relu, embedding_model, pointwise_matmul,
                    scene_model, strided_conv)


def counts(model):
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    return sum(int(np.prod(v.shape)) for v in model.variables), trainable


def test_seed_config_matches_the_original_summaries():
    embedding, scene = embedding_model(SEED_CONFIG), scene_model(SEED_CONFIG)
    assert counts(embedding) == (303_840, 303_104)
    assert counts(scene) == (1_342_241, 1_339_073)
    assert embedding.output_shape == (None, 512)
    assert scene.output_shape == (None, 80, 80, 1)
    names = [layer.name for layer in scene.layers]
    for name in ("scene_input", "scene_down_5_relu_m", "obj_embedding_inp", "scene_features", "broadcast_e", "add_3",
                 "up_sampling2d_2", "scene_up_2_conv_m", "classifier_1_relu_m", "classifier"):
        assert name in names
    assert scene.get_layer("broadcast_e").output.shape == (None, 10, 10, 512)
    assert [layer.name for layer in embedding.layers][-3:] == ["obj_e_gp", "obj_embeddings", "obj_e_l2"]
    np.testing.assert_array_equal(scene.get_layer("classifier").bias.numpy(), [-5.0])


def test_embeddings_are_unit_length():
    e = np.asarray(embedding_model(TINY_MODEL)(np.random.default_rng(0).random((5, 64, 64, 3)), training=False))
    assert e.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1, rtol=1e-5)


def test_one_scene_is_broadcast_against_c_embeddings():
    keras.utils.set_random_seed(0)  # an unlucky random init can make the objects' maps nearly equal
    model = scene_model(TINY_MODEL)
    rng = np.random.default_rng(0)
    scene, embeddings = rng.random((1, 128, 128, 3)), rng.normal(size=(3, 8))
    logits = np.asarray(model([scene, embeddings], training=False))
    assert logits.shape == (3, 16, 16, 1)
    for c in range(3):  # each object's map is what a pass with that object alone gives
        alone = np.asarray(model([scene, embeddings[c:c + 1]], training=False))
        np.testing.assert_allclose(logits[c:c + 1], alone, rtol=1e-4, atol=1e-5)
    assert not np.allclose(logits[0], logits[1])


def test_the_originals_truncated_normal_initialiser_of_the_two_dense_layers():
    import dataclasses

    from models import CPU_CONFIG, build_models

    def kernels(initializer):
        models = build_models(dataclasses.replace(CPU_CONFIG, dense_initializer=initializer), seed=0)
        return [np.asarray(layer.kernel) for layer in (models.embedding.get_layer("obj_embeddings"),
                                                        models.scene.get_layer("scene_features"))]

    for w in kernels("truncated_normal"):  # stddev 0.05, cut at 2 stddev
        assert np.abs(w).max() <= 0.1 and 0.035 < w.std() < 0.05
    for w in kernels("glorot_uniform"):  # 128 x 128: uniform within +-sqrt(6 / 256) = +-0.153
        assert 0.1 < np.abs(w).max() <= 0.154


def test_film_matching_scales_and_shifts_each_object_and_starts_as_add():
    import dataclasses

    from models import FiLM

    rng = np.random.default_rng(0)
    x, e = rng.normal(size=(1, 2, 2, 3)), rng.normal(size=(2, 4))  # one scene's features, 2 objects
    layer = FiLM()
    layer.build((x.shape, e.shape))
    kernel, bias = rng.normal(size=(4, 6)), rng.normal(size=6)
    layer.set_weights([kernel, bias])
    out = np.asarray(layer([x, e]))
    assert out.shape == (2, 2, 2, 3)
    for c in range(2):  # by hand: gamma and beta are the two halves of e @ kernel + bias
        gamma_beta = e[c] @ kernel + bias
        np.testing.assert_allclose(out[c], x[0] * (1 + gamma_beta[:3]) + gamma_beta[3:], rtol=1e-5)

    keras.utils.set_random_seed(0)
    add = scene_model(TINY_MODEL)
    keras.utils.set_random_seed(0)
    film = scene_model(dataclasses.replace(TINY_MODEL, matching="film"))
    assert {layer.name for layer in film.layers} - {layer.name for layer in add.layers} == {
        "film_up_0", "film_up_1", "film_up_2", "film_classifier_0", "film_classifier_1"}
    for layer in add.layers:  # the same weights; the FiLM layers start at zero: the same outputs
        film.get_layer(layer.name).set_weights(layer.get_weights())
    scene, embeddings = rng.random((1, 128, 128, 3)), rng.normal(size=(3, 8))
    np.testing.assert_allclose(np.asarray(film([scene, embeddings])), np.asarray(add([scene, embeddings])),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("convs", [0, 1, 2])
def test_box_head_cells_see_their_neighbours_through_each_3x3_conv(convs):
    import dataclasses

    config = dataclasses.replace(TINY_MODEL, priors=((8.0, 8.0),), box_head_convs=convs, matching="film")
    g, channels = config.grid_size, config.classifier_filters[-1]
    features, embedding = keras.Input((g, g, channels)), keras.Input((config.embedding_dim,))
    keras.utils.set_random_seed(0)
    head = keras.Model([features, embedding], box_head(features, embedding, config))
    rng = np.random.default_rng(0)
    x, e = rng.normal(size=(2, g, g, channels)), rng.normal(size=(2, config.embedding_dim))
    nudged = x.copy()
    nudged[:, 7, 9] += 1.0  # one cell's features
    changed = np.any(np.asarray(head([nudged, e])) != np.asarray(head([x, e])), axis=(0, 3, 4))  # (g, g)
    rows, cols = np.nonzero(changed)  # by hand: a (2 convs + 1)-wide square around (7, 9)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (7 - convs, 7 + convs, 9 - convs, 9 + convs)
    assert changed.sum() == (2 * convs + 1) ** 2


CONV_HLO = """
import jax, jax.numpy as jnp
import models
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")))
print("__ynn_fusion" in conv.lower(jnp.ones((1, 32, 32, 16)), jnp.ones((3, 3, 16, 32))).compile().as_text())
"""


def compiles_conv_to_ynnpack(xla_flags):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    result = subprocess.run([sys.executable, "-c", CONV_HLO], cwd=REPO, env=env, capture_output=True, text=True,
                            check=True)
    return result.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.slow
def test_convolutions_go_to_xlas_own_emitter_unless_the_user_says_otherwise():
    assert not compiles_conv_to_ynnpack(None)
    assert not compiles_conv_to_ynnpack("--xla_cpu_enable_fast_math=false")  # other flags are kept beside it
    assert compiles_conv_to_ynnpack("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution")


@pytest.mark.parametrize("cells", [(2, 5, 5), (7,)])  # objects x h x w (the weight gradient per object), rows
def test_pointwise_matmul_gradients_are_the_einsums(cells):
    x, w, target = (jax.random.normal(k, shape) for k, shape in
                    zip(jax.random.split(jax.random.key(0), 3), [(*cells, 3), (3, 4), (*cells, 4)]))

    def loss(matmul):
        return lambda x, w: jnp.sum(jnp.tanh(matmul(x, w)) * target)

    ours = jax.grad(loss(pointwise_matmul), argnums=(0, 1))(x, w)
    plain = jax.grad(loss(lambda x, w: jnp.einsum("...c,co->...o", x, w)), argnums=(0, 1))(x, w)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pointwise_matmul(x, w), jnp.einsum("...c,co->...o", x, w), rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 10, 2)])  # (b, H, W, c): "same" pads one side or both
def test_strided_conv_is_keras_conv_with_its_gradients(shape):
    x, w, target = (jax.random.normal(k, s) for k, s in
                    zip(jax.random.split(jax.random.key(0), 3), [shape, (3, 3, shape[-1], 4), (1,)]))
    keras_conv = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)
    keras_conv.build(shape)
    out = strided_conv(x, w)
    assert out.shape == (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), 4)
    np.testing.assert_allclose(out, keras_conv.stateless_call([w], [], x)[0], rtol=1e-5, atol=1e-6)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.tanh(conv(x, w)) * (target + jnp.arange(4)))

    plain = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",  # noqa: E731
                                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ours, theirs = (jax.grad(loss(conv), argnums=(0, 1))(x, w) for conv in (strided_conv, plain))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    batched = jax.vmap(jax.grad(loss(strided_conv), argnums=1), in_axes=(0, None))(x[:, None], w)  # as cell_outputs
    np.testing.assert_allclose(jnp.sum(batched, axis=0), theirs[1], rtol=1e-5, atol=1e-5)


def test_weights_saved_with_keras_conv2d_load_into_yolzs(tmp_path):
    """Keras keys a weights file's layers by class name: runs saved before the scene backbone used
    models.Conv2D must still load."""
    def model(conv):
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, conv(4, 3, strides=2, padding="same")(inputs))

    saved, loaded = model(keras.layers.Conv2D), model(Conv2D)
    saved.save_weights(tmp_path / "m.weights.h5")
    loaded.load_weights(tmp_path / "m.weights.h5")
    x = np.random.default_rng(0).random((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(loaded(x), saved(x), rtol=1e-5, atol=1e-6)


def test_the_up_paths_conv_before_upsampling_is_the_originals_conv_after():
    """scene_model runs each up step's 1x1 conv, batch norm and relu before the nearest upsampling
    (a quarter of the cells); the original after. Training mode: the same outputs, batch-norm
    moving statistics and gradients."""
    cells = keras.Input((None, None, 3))
    block = keras.Model(cells, conv_bn_relu(cells, 5, 1, 1, "up"))
    inputs = keras.Input((4, 4, 3))
    upsample = keras.layers.UpSampling2D()
    ours = keras.Model(inputs, upsample(block(inputs)))
    original = keras.Model(inputs, block(upsample(inputs)))
    x = jax.random.normal(jax.random.key(0), (3, 4, 4, 3)) + 0.5
    target = jax.random.normal(jax.random.key(1), (3, 8, 8, 5))
    params = [v.value for v in block.trainable_variables]
    state = [v.value for v in block.non_trainable_variables]

    def loss(model):
        def f(params):
            y, new_state = model.stateless_call(params, state, x, training=True)
            return jnp.sum(y * target), (y, new_state)
        return jax.grad(f, has_aux=True)(params)

    (grads, (y, new_state)), (grads_o, (y_o, new_state_o)) = loss(ours), loss(original)
    np.testing.assert_allclose(y, y_o, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(y)) > 0 and float(jnp.min(y)) == 0  # the relu did cut
    for a, b in zip(new_state, new_state_o):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for variable, a, b in zip(block.trainable_variables, grads, grads_o):
        if variable.path.endswith("conv_m/bias"):  # batch norm takes the mean out: zero but for rounding
            continue
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)



def test_add_to_each_gradients_are_broadcastings():
    x, skip, target = (jax.random.normal(k, shape) for k, shape in
                       zip(jax.random.split(jax.random.key(0), 3), [(3, 4, 4, 2), (1, 4, 4, 2), (3, 4, 4, 2)]))

    def loss(add):
        return lambda x, skip: jnp.sum(jnp.tanh(add(x, skip)) * target)

    ours = jax.grad(loss(add_to_each), argnums=(0, 1))(x, skip)
    plain = jax.grad(loss(jnp.add), argnums=(0, 1))(x, skip)
    for a, b in zip(ours, plain):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
