"""Benchmarks every trained model of an experiment on its held-out test split."""
from data.runtime import import_tensorflow

import_tensorflow()  # first, so TensorFlow's start-up noise stays out of the terminal whatever imports it
