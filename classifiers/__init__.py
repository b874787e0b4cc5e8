"""Supervised detectors: the baseline CNN and the keras-tuner search over CNNs."""
