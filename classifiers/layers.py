"""The kit's own Keras layers, and the one way the kit loads a saved model.

Keras safe mode refuses anything executable in an archive (lambdas, pickled code) and knows only the
layers registered before loading. Every layer a detector needs lives here, registered under the package
"deepfake_kit", and `load_model_safely` imports this module first: safe mode then loads the kit's own
layers and still refuses everything else. A new layer goes here, with get_config() for its arguments.
"""
from data.runs import BrokenRun
from data.runtime import import_tensorflow

tf = import_tensorflow()  # TensorFlow's start-up noise silenced before Keras imports it
import keras  # noqa: E402
from keras import ops  # noqa: E402

PACKAGE = "deepfake_kit"


@keras.saving.register_keras_serializable(package=PACKAGE)
class LogSpectrum(keras.layers.Layer):
    """log(1 + |2-D Fourier transform|) of each channel, zero frequency at the centre.

    A GAN's upsampling layers leave peaks at fixed frequencies that are hard to see in pixels and plain in
    the spectrum (Frank et al. 2020; Durall et al. 2020). Computed in float32 whatever the dtype policy:
    the transform's dynamic range does not survive bfloat16."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        x = ops.transpose(ops.cast(images, "float32"), (0, 3, 1, 2))  # the transform runs over the last two axes
        real, imag = ops.fft2((x, ops.zeros_like(x)))
        magnitude = ops.log1p(ops.sqrt(real * real + imag * imag))
        height, width = images.shape[1], images.shape[2]
        magnitude = ops.roll(ops.roll(magnitude, height // 2, axis=2), width // 2, axis=3)
        return ops.transpose(magnitude, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization whose training step is one TensorFlow operation (FusedBatchNormV3:
    oneDNN's batch normalisation on a CPU, with its fused gradient).

    Keras 3 normalises a training batch in a dozen elementwise operations (moments, scale and shift, in
    float32 with casts either side under mixed bfloat16), each again in the backward pass; on a detector's
    64 px activations they took longer than its convolutions' forward pass (docs/results.md, "Where a step's
    time goes"). Same weights, same moving statistics (the operation's unbiased batch variance is turned back
    into the biased one Keras keeps), the same arithmetic up to rounding. Inference, masks and Keras's other
    options (renorm, synchronized, an axis other than the channels of a 4-D input) take Keras's own path."""

    def call(self, inputs, training=None, mask=None):
        fused = (training and self.trainable and mask is None and not self.renorm and not self.synchronized
                 and len(inputs.shape) == 4 and self.axis in (-1, 3))
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = ops.cast(self.gamma, "float32") if self.scale else ops.ones((channels,), "float32")
        offset = ops.cast(self.beta, "float32") if self.center else ops.zeros((channels,), "float32")
        empty = tf.constant([], tf.float32)  # no running statistics in: a training batch brings its own
        outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)


def load_model_safely(path):
    """A .keras archive in Keras safe mode (no lambdas, no pickled code; the kit's layers above are known),
    uncompiled; BrokenRun naming the file when it is damaged or holds something safe mode refuses."""
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # a damaged archive surfaces as many exception types
        raise BrokenRun(f"{path} cannot be loaded ({type(e).__name__}: {e})")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MahalanobisScore(keras.layers.Layer):
    """P(fake) from how far a face's features lie from those of real faces: the Mahalanobis distance to their
    mean under their (shrunk) covariance, standardised by the distances of the real faces it was fit on and
    squashed by a sigmoid (a monotone map: the ranking, and so the AUC, is the distance's).

    Fit outside (numpy) and set with set_weights([mean, precision, [loc, scale]]); saved with the model, so
    a run folder holding it loads in safe mode like any detector. Always float32."""

    def __init__(self, features, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.features = int(features)
        self.mean = self.add_weight(shape=(self.features,), initializer="zeros", trainable=False, name="mean")
        self.precision_matrix = self.add_weight(shape=(self.features, self.features), initializer="identity",
                                                trainable=False, name="precision")
        self.standardise = self.add_weight(shape=(2,), initializer="ones", trainable=False, name="loc_scale")

    def call(self, x):
        diff = ops.cast(x, "float32") - self.mean
        squared = ops.sum(ops.matmul(diff, self.precision_matrix) * diff, axis=-1, keepdims=True)
        distance = ops.sqrt(ops.maximum(squared, 0.0))
        return ops.sigmoid((distance - self.standardise[0]) / self.standardise[1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return dict(super().get_config(), features=self.features)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelMoments(keras.layers.Layer):
    """(N, H, W, C) activations -> (N, 2C): each channel's mean and standard deviation over the positions.

    What a head reads of a convolutional block: the mean says how much of a pattern there is, the spread how
    unevenly it sits (a generator's texture is often too even or too patchy). Computed in float32."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x):
        x = ops.cast(x, "float32")
        mean = ops.mean(x, axis=(1, 2))
        spread = ops.sqrt(ops.maximum(ops.mean(ops.square(x), axis=(1, 2)) - ops.square(mean), 0.0) + 1e-6)
        return ops.concatenate([mean, spread], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class EitherFires(keras.layers.Layer):
    """Two heads' logits -> P(fake) = sigmoid(max(a - t_a, g(b - t_b))): fake where either head passes its own
    threshold (t_a, t_b: logits), so at 0.5 its verdict is "either says fake". g(m) = m above the second
    head's threshold and m * below under it: below > 1 leaves the order of the faces neither head accuses
    more to the first head. Its one weight: [t_a, t_b, below]. Always float32."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.rule = self.add_weight(shape=(3,), initializer="ones", trainable=False, name="thresholds_and_below")

    def call(self, logits):
        a, b = (ops.cast(x, "float32") for x in logits)
        margin = b - self.rule[1]
        return ops.sigmoid(ops.maximum(a - self.rule[0], ops.where(margin > 0, margin, margin * self.rule[2])))

    def compute_output_shape(self, input_shape):
        return input_shape[0]
