"""The fine-tuning recipe of `classifiers.adapt --method finetune`: two copies of the source network, one
frozen, one learning, their verdicts combined as "fake if either says fake" (p = a + b - ab), so every fake
the source caught it still catches and what it can lose is only where the learner starts accusing reals.

The learner is fine-tuned (all of it, its top, or its head: --tune) on the K shots of each class mixed half
and half with a replay of the source's own training images, so it also learns to stay quiet on the old reals.
Fine-tuning one network forgets more (docs/new-families.md). A head on frozen features (classifiers.heads)
reaches further with the same shots; this recipe stays for comparison and for where a study shows it pays.
"""
import keras
import numpy as np
from keras import layers

from classifiers.layers import load_model_safely

FINETUNE = {
    "tune": "all",  # what of the learning copy trains: all, top (the last quarter of its layers) or head
    "learning_rate": 1e-4,  # Adam, small: the learning copy starts from the source's weights (not tuned further)
    "epochs": 10,
    "augment": ["flip"],
}
TUNES = ("all", "top", "head")


def learning_set(shots, replay):
    """The K shots repeated to as many images as the replay, then both together: every epoch sees the new
    family and the old one half and half."""
    repeat = max(1, -(-len(replay[1]) // len(shots[1])))
    x = np.concatenate([np.repeat(shots[0][None], repeat, 0).reshape(-1, *shots[0].shape[1:]), replay[0]])
    y = np.concatenate([np.tile(shots[1], repeat), replay[1]])
    return x, y


def set_tuned(learner, tune):
    """What of the learning copy trains: everything, the last quarter of its weighted layers, or the last one."""

    def weighted(model):
        out = []
        for layer in model.layers:
            out += weighted(layer) if isinstance(layer, keras.Model) else ([layer] if layer.weights else [])
        return out

    layers_with_weights = weighted(learner)
    learner.trainable = True
    if tune != "all":
        keep = layers_with_weights[-1:] if tune == "head" else layers_with_weights[-max(1, len(layers_with_weights) // 4):]
        for layer in layers_with_weights:
            layer.trainable = layer in keep


def build_either(source_model_path, tune, name):
    """[0, 255] faces -> P(fake) = a + b - ab of the frozen source (a) and its learning copy (b). Stock layers
    only, so the run loads in safe mode like any detector."""
    frozen, learner = (load_model_safely(source_model_path) for _ in range(2))
    frozen.trainable = False
    set_tuned(learner, tune)
    frozen.name, learner.name = "source", "learner"  # two copies of one network need two names
    inputs = keras.Input(frozen.input_shape[1:], name="image")
    a, b = frozen(inputs), learner(inputs)
    # in float32 whatever the policy: probabilities near 0 and 1 are what thresholds separate
    total = layers.Add(name="a_plus_b", dtype="float32")([a, b])
    both = layers.Multiply(name="a_times_b", dtype="float32")([a, b])
    either = layers.Subtract(name="p_fake", dtype="float32")([total, both])
    return keras.Model(inputs, either, name=name.replace("-", "_").replace(".", "_"))
