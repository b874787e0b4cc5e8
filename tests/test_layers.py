"""The kit's fused batch normalisation is Keras's BatchNormalization, computed in one operation."""
import numpy as np
import pytest

from classifiers.layers import FusedBatchNormalization, load_model_safely
from data.runtime import native_bfloat16

import keras  # noqa: E402  (after classifiers.layers, which silences TensorFlow first)
import tensorflow as tf  # noqa: E402


def twin_layers(dtype="float32", **kwargs):
    """A Keras BatchNormalization and the kit's, built alike, with the same (non-trivial) weights."""
    keras_bn = keras.layers.BatchNormalization(momentum=0.8, dtype=dtype, **kwargs)
    fused_bn = FusedBatchNormalization(momentum=0.8, dtype=dtype, **kwargs)
    shape = (None, 6, 5, 4)
    keras_bn.build(shape)
    fused_bn.build(shape)
    rng = np.random.default_rng(0)
    weights = [w + rng.normal(0, 0.3, w.shape).astype(np.float32) for w in keras_bn.get_weights()]
    weights = [np.abs(w) if i == len(weights) - 1 else w for i, w in enumerate(weights)]  # a positive variance
    keras_bn.set_weights(weights)
    fused_bn.set_weights(weights)
    return keras_bn, fused_bn


def training_step(layer, x, upstream):
    """(output, gradient with respect to the input, gradients with respect to the weights) of one training call."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    return y.numpy().astype(np.float32), [g.numpy().astype(np.float32) for g in grads]


@pytest.mark.parametrize("options", [{}, {"center": False}, {"scale": False, "gamma_initializer": "zeros"}])
def test_a_training_step_matches_keras_outputs_gradients_and_moving_statistics(options):
    keras_bn, fused_bn = twin_layers(**options)
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, (3, 6, 5, 4)).astype(np.float32)
    upstream = rng.normal(size=(3, 6, 5, 4)).astype(np.float32)
    y_keras, grads_keras = training_step(keras_bn, x, upstream)
    y_fused, grads_fused = training_step(fused_bn, x, upstream)
    np.testing.assert_allclose(y_fused, y_keras, rtol=1e-4, atol=1e-4)
    assert len(grads_fused) == len(grads_keras) == 1 + len(keras_bn.trainable_variables)
    for g_fused, g_keras in zip(grads_fused, grads_keras):
        np.testing.assert_allclose(g_fused, g_keras, rtol=1e-3, atol=1e-4)
    # the moving statistics took the same step (the biased batch variance, as Keras keeps it)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(fused_bn, name).numpy(), getattr(keras_bn, name).numpy(), rtol=1e-5)
    assert not np.allclose(fused_bn.moving_mean.numpy(), twin_layers(**options)[1].moving_mean.numpy())


def test_inference_is_kerass_own_and_a_frozen_layer_does_not_learn_its_statistics():
    keras_bn, fused_bn = twin_layers()
    x = np.random.default_rng(2).normal(size=(2, 6, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(fused_bn(x, training=False).numpy(), keras_bn(x, training=False).numpy())
    before = fused_bn.moving_mean.numpy().copy()
    fused_bn.trainable = False
    fused_bn(x, training=True)
    np.testing.assert_array_equal(fused_bn.moving_mean.numpy(), before)


@pytest.mark.skipif(not native_bfloat16(), reason="this CPU (or oneDNN's cap) has no native bfloat16")
def test_under_mixed_bfloat16_it_keeps_float32_weights_and_gives_bfloat16_like_keras():
    keras_bn, fused_bn = twin_layers(dtype="mixed_bfloat16")
    x = np.random.default_rng(3).normal(1.0, 2.0, (4, 6, 5, 4)).astype(np.float32)
    upstream = np.ones((4, 6, 5, 4), np.float32)
    y_keras = keras_bn(tf.cast(x, tf.bfloat16), training=True)
    y_fused, grads = training_step(fused_bn, tf.cast(x, tf.bfloat16), upstream)
    assert y_keras.dtype == tf.bfloat16 and fused_bn.gamma.dtype == "float32"
    np.testing.assert_allclose(y_fused, y_keras.numpy().astype(np.float32), atol=0.05)
    np.testing.assert_allclose(fused_bn.moving_mean.numpy(), keras_bn.moving_mean.numpy(), rtol=1e-2, atol=1e-2)


def test_a_model_with_it_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((6, 5, 4))
    model = keras.Model(inputs, FusedBatchNormalization(name="bn")(inputs))
    model.get_layer("bn").set_weights(twin_layers()[1].get_weights())
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = load_model_safely(path)
    assert type(loaded.get_layer("bn")) is FusedBatchNormalization
    x = np.random.default_rng(4).normal(size=(2, 6, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())
