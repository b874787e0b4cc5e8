"""How fast a trained network answers on this machine: latency at batch 1 and throughput at a larger batch,
each as the median of several timings with their spread. Read by the report (every detector's row) and by
the benchmarks."""
import time

import numpy as np

from data.runtime import import_tensorflow


def spread(values):
    """median, min, max and the relative spread (max - min) / median of a list of measurements."""
    med = float(np.median(values))
    return {"median": med, "min": float(min(values)), "max": float(max(values)),
            "spread": (float(max(values)) - float(min(values))) / med if med else 0.0}


def latency(model, size, repeats=50, batch=64):
    """(ms per image at batch 1, images/s at `batch`), each as spread() (median, min, max), timed after
    tracing both shapes."""
    tf = import_tensorflow()
    run = tf.function(lambda x: model(x, training=False))
    one, many = tf.zeros((1, size, size, 3)), tf.zeros((batch, size, size, 3))
    run(one), run(many)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(one).numpy()
        times.append(1000 * (time.perf_counter() - t))
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        run(many).numpy()
        rates.append(batch / (time.perf_counter() - t))
    return spread(times), spread(rates)
