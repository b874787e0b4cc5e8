"""Two small fixes that let Keras 3's fit() train under tf.distribute.MultiWorkerMirroredStrategy.

Keras 3.15 (TF backend) fails there in two places (keras-team/keras issue 20585, open):
- building the model's metrics reduces the first input batch across workers, which a collective
  reduce cannot do eagerly ("Attempt to convert a value (PerReplica...)"): this worker's own batch
  is used instead; only its shapes matter for building;
- the per-step metric values are scalars, which the "mean over axis 0" reduction rejects: they are
  averaged over replicas with axis=None.
Both are applied only when that strategy is in use, and only once.
"""
import tensorflow as tf
from keras.src.backend.tensorflow import trainer

_applied = False


def patch_keras_for_multiworker():
    global _applied
    if _applied:
        return

    build = trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce_per_replica = trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], next(it))
                break
            iterator = None
        return build(self, iterator, data_batch)

    def _reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("mean", "auto"):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = _reduce_per_replica
    _applied = True
