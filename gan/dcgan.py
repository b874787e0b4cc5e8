"""The DCGAN as a keras.Model overriding train_step, so fit(), callbacks and progress bars work as usual.

A deeper discriminator (the resnet recipe's network, `--discriminator resnet`) also gets the R1 gradient
penalty (Mescheder et al. 2018): gamma/2 times the squared gradient of D's logits on real faces with respect to
those faces, which keeps D from sharpening its verdict around the few training faces and stops the
oscillation a strong D otherwise falls into. It is lazy (Karras et al. 2020): a step of its own every
R1_EVERY discriminator steps, weighted by R1_EVERY, because its second-order gradient doubled the cost
of a ResNet discriminator's step on a CPU.

Two aids for a small training set on top of Radford et al.'s recipe: DiffAugment on everything the
discriminator sees (gan/augment.py), and an exponential moving average of the generator's weights
(`ema_generator`), which is what sample grids, quality figures and the saved generator use: the raw
generator oscillates from step to step, its average draws steadier faces (Karras et al. 2018; Yazici et al. 2019).
"""
import os

import keras
import numpy as np
from PIL import Image
import tensorflow as tf

from data.runs import write_atomic
from gan.augment import diff_augment

LEARNING_RATE = 2e-4
BETA_1 = 0.5
EMA_DECAY = 0.999  # per generator step: the average spans about the last 1,000 steps
R1_EVERY = 4  # the R1 penalty's own step after every 4th discriminator step
EMA_WARMUP = 10  # decay min(EMA_DECAY, (1 + t) / (EMA_WARMUP + t)): early on the average follows closely


class DCGAN(keras.Model):
    def __init__(self, generator, discriminator, latent_dim, label_smoothing=0.0, instance_noise=0.0, seed=0,
                 augment=(), ema_decay=EMA_DECAY, r1_gamma=0.0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        # the averaged generator: a copy whose weights trail the trained one's (ema_decay 0: an exact copy)
        self.ema_generator = keras.models.clone_model(generator)
        self.ema_generator.set_weights(generator.get_weights())
        self.ema_decay = float(ema_decay)
        self.augment_policy = tuple(augment)  # DiffAugment operations, () for none
        self.latent_dim = latent_dim
        self.r1_gamma = float(r1_gamma)  # 0: no gradient penalty
        self.label_smoothing = label_smoothing  # one-sided: real targets become 1 - s
        self.instance_noise = instance_noise  # std of Gaussian noise added to both D inputs
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.bce = keras.losses.BinaryCrossentropy(from_logits=True)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake") + (("r1",) if r1_gamma else ())}
        self.built = True  # both networks are built Functional models; BackupAndRestore needs this

    def compile(self, d_optimizer=None, g_optimizer=None):
        super().compile()
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(LEARNING_RATE, beta_1=BETA_1)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(LEARNING_RATE, beta_1=BETA_1)
        # Built now, so a checkpoint restores both optimizers' state before the first step.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def discriminator_input(self, images):
        """What D sees of a batch: DiffAugmented (both steps, reals and fakes alike), then instance noise."""
        if self.augment_policy:
            images = diff_augment(images, self.seed_generator, self.augment_policy)
        if self.instance_noise:
            images = images + self.instance_noise * keras.random.normal(tf.shape(images), seed=self.seed_generator)
        return images

    def update_ema(self):
        step = tf.cast(self.g_optimizer.iterations, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + step) / (EMA_WARMUP + step))
        # every variable, BatchNorm's moving statistics too, so the average's statistics match its weights
        for avg, new in zip(self.ema_generator.weights, self.generator.weights):
            avg.assign(decay * avg + (1.0 - decay) * tf.cast(new, avg.dtype))

    def r1_step(self, real, fake):
        """The lazy R1 penalty's own discriminator step: gamma/2 * R1_EVERY * E|d logit / d real|^2, D judging
        the reals in a mixed batch as in its loss (its BatchNorm sees what it sees there); returns the penalty."""
        batch = tf.shape(real)[0]
        with tf.GradientTape() as tape:
            with tf.GradientTape(watch_accessed_variables=False) as r1_tape:
                r1_tape.watch(real)
                logits = self.discriminator(self.discriminator_input(tf.concat([real, fake], axis=0)), training=True)
                real_logit_sum = tf.reduce_sum(logits[:batch])
            grad = r1_tape.gradient(real_logit_sum, real)  # on the faces as given, before DiffAugment
            r1 = tf.reduce_mean(tf.reduce_sum(tf.square(tf.cast(grad, tf.float32)), axis=[1, 2, 3]))
            loss = 0.5 * self.r1_gamma * R1_EVERY * r1
        grads = tape.gradient(loss, self.discriminator.trainable_variables)
        # (the logit's bias has no gradient here: a constant shift does not change how the logit slopes)
        self.d_optimizer.apply_gradients([(g, v) for g, v in zip(grads, self.discriminator.trainable_variables)
                                          if g is not None])
        return r1

    def train_step(self, real):
        batch = tf.shape(real)[0]
        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        fake = self.generator(z, training=True)
        with tf.GradientTape() as tape:
            # One mixed batch: with separate batches, D's BatchNorm statistics alone give the fakes away.
            logits = self.discriminator(self.discriminator_input(tf.concat([real, fake], axis=0)), training=True)
            real_logits, fake_logits = logits[:batch], logits[batch:]
            d_loss = (self.bce(tf.ones_like(real_logits) * (1.0 - self.label_smoothing), real_logits)
                      + self.bce(tf.zeros_like(fake_logits), fake_logits))
        grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
        if self.r1_gamma:
            due = tf.equal(self.g_optimizer.iterations % R1_EVERY, 0)
            r1 = tf.cond(due, lambda: self.r1_step(real, tf.stop_gradient(fake)), lambda: tf.constant(0.0))
            self.trackers["r1"].update_state(r1, sample_weight=tf.cast(due, tf.float32))

        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            # D judges the fakes inside a mixed batch here too, under the same batch statistics as above.
            mixed = tf.concat([real, self.generator(z, training=True)], axis=0)
            logits = self.discriminator(self.discriminator_input(mixed), training=True)[batch:]
            g_loss = self.bce(tf.ones_like(logits), logits)
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        self.update_ema()

        self.trackers["d_loss"].update_state(d_loss)
        self.trackers["g_loss"].update_state(g_loss)
        self.trackers["d_acc_real"].update_state(tf.cast(real_logits > 0, tf.float32))
        self.trackers["d_acc_fake"].update_state(tf.cast(fake_logits < 0, tf.float32))
        return {name: t.result() for name, t in self.trackers.items()}


def to_uint8(images):
    """Generator output in [-1, 1] -> uint8 RGB."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


def grid(images, cols=8):
    """(N, H, W, 3) uint8 -> one image with the samples in rows of `cols`."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * h, cols * w, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, cols)
        out[r * h:(r + 1) * h, col * w:(col + 1) * w] = img
    return out


class SampleGrid(keras.callbacks.Callback):
    """Every epoch (a round of steps): the averaged generator draws one fixed latent batch; logged to
    TensorBoard (step = optimizer steps so far) and saved as PNG."""

    def __init__(self, z_fixed, log_dir, png_dir):
        super().__init__()
        self.z_fixed = z_fixed
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))
        self.png_dir = png_dir

    def on_epoch_end(self, epoch, logs=None):
        steps = int(self.model.g_optimizer.iterations.numpy())
        picture = grid(to_uint8(self.model.ema_generator(self.z_fixed, training=False)))
        with self.writer.as_default():
            tf.summary.image("generated", picture[None], step=steps)
        self.writer.flush()
        write_atomic(os.path.join(self.png_dir, f"step_{steps:06d}.png"), Image.fromarray(picture).save)
