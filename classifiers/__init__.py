"""Supervised detectors: the baseline CNN and the keras-tuner search over CNNs."""
from data.runtime import import_tensorflow

import_tensorflow()  # first, so TensorFlow's start-up noise stays out of the terminal whatever imports it
